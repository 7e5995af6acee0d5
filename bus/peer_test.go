package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

var testPeerVerbs = []string{"migrate-prepare", "migrate-finish", "migrate-cancel"}

// TestPeerVerbsEnforcedByServer: only agent identities send the
// agent-to-agent verbs; the embedded server refuses every other role.
func TestPeerVerbsEnforcedByServer(t *testing.T) { checkPeerVerbs(t, onEmbedded(t)) }

// TestPeerVerbsExternalServerConfig: the same with Debian's nats-server
// and ServerConfig's authorization block (the example in docs/bus.md).
func TestPeerVerbsExternalServerConfig(t *testing.T) { checkPeerVerbs(t, onExternal(t)) }

func checkPeerVerbs(t *testing.T, as func(bus.Role) *nats.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	calls := make(chan string, 64)
	svc, err := bus.StartCommands(ctx, as(bus.RoleAgent), bus.HandlerFunc(func(ctx context.Context, verb string, body []byte) (any, error) {
		calls <- verb
		return "served " + verb, nil
	}), bus.CommandOptions{Host: "h1", Verbs: []string{"info", "define"}, PeerVerbs: testPeerVerbs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	noCall := func(who string) {
		t.Helper()
		select {
		case v := <-calls:
			t.Fatalf("the agent ran %s for %s", v, who)
		default:
		}
	}

	// Another agent (the source of a migration, on its own connection)
	// sends them on the peer subjects.
	peer := bus.NewClient(as(bus.RoleAgent), "h1")
	for _, verb := range testPeerVerbs {
		var got string
		if err := peer.CallPeer(ctx, verb, nil, &got); err != nil || got != "served "+verb {
			t.Fatalf("agent %s: %q, %v", verb, got, err)
		}
		if v := <-calls; v != verb {
			t.Fatalf("agent %s: the handler ran %s", verb, v)
		}
		// Not on the command subject, not even for an agent.
		if err := peer.Call(ctx, verb, nil, nil); !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), "agent to agent only") {
			t.Fatalf("agent %s on the command subject: %v, want a refusal", verb, err)
		}
		noCall("an agent on the command subject")
	}

	for _, r := range []bus.Role{bus.RoleOperator, bus.RoleConsole, bus.RoleReadOnly} {
		c := bus.NewClient(as(r), "h1")
		for _, verb := range testPeerVerbs {
			// The server drops it and says so, well before the deadline.
			cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
			err := c.CallPeer(cctx, verb, nil, nil)
			late := cctx.Err()
			ccancel()
			if !errors.Is(err, nats.ErrPermissionViolation) || !errors.Is(err, domains.ErrInvalid) || late != nil ||
				!strings.Contains(err.Error(), "refused by the NATS server") {
				t.Fatalf("%s %s: %v (deadline passed: %v), want a fast permissions violation", r, verb, err, late)
			}
			// The command subject the operator may publish on does not
			// serve it (the read-only identity is refused it by the server).
			err = c.Call(ctx, verb, nil, nil)
			if !errors.Is(err, domains.ErrInvalid) || (r != bus.RoleReadOnly && !strings.Contains(err.Error(), "agent to agent only")) {
				t.Fatalf("%s %s on the command subject: %v, want a refusal", r, verb, err)
			}
			noCall(string(r))
		}
		// Commands still work for the operator.
		if r == bus.RoleOperator {
			if err := c.Call(ctx, "define", nil, nil); err != nil {
				t.Fatalf("operator define: %v", err)
			}
			<-calls
		}
	}
}

// Peer verbs are checked as verbs are, and never also command verbs.
func TestPeerVerbsOptions(t *testing.T) {
	_, nc := embedded(t)
	for _, o := range []bus.CommandOptions{
		{Host: "h", Verbs: []string{"a"}, PeerVerbs: []string{"a"}},
		{Host: "h", Verbs: []string{"a"}, PeerVerbs: []string{"b", "b"}},
		{Host: "h", Verbs: []string{"a"}, PeerVerbs: []string{"b.c"}},
		{Host: "h", Verbs: []string{"a"}, PeerVerbs: []string{">"}},
	} {
		s, err := bus.StartCommands(context.Background(), nc, bus.HandlerFunc(func(context.Context, string, []byte) (any, error) { return nil, nil }), o)
		if !errors.Is(err, domains.ErrInvalid) {
			if s != nil {
				_ = s.Stop(context.Background())
			}
			t.Errorf("%+v: %v, want invalid", o, err)
		}
	}
}
