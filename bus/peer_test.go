package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
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

// TestReplySubjectNotAnInbox: an operator cannot route the agent's answer
// onto a peer subject (or an event subject, or the server's API) by naming
// it as the reply subject of a command it may send: the agent drops the
// request before running it.
func TestReplySubjectNotAnInbox(t *testing.T) {
	as := onEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	calls := make(chan string, 64)
	agent := as(bus.RoleAgent)
	svc, err := bus.StartCommands(ctx, agent, bus.HandlerFunc(func(ctx context.Context, verb string, body []byte) (any, error) {
		calls <- verb
		return "served " + verb, nil
	}), bus.CommandOptions{Host: "h1", Verbs: []string{"info"}, PeerVerbs: testPeerVerbs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	evts, err := agent.SubscribeSync("vmledger.evt.>")
	if err != nil {
		t.Fatal(err)
	}
	opc := as(bus.RoleOperator)
	for _, reply := range []string{"vmledger.peer.h1.migrate-cancel", "vmledger.evt.h1.d.defined", "$JS.API.INFO"} {
		if err := opc.PublishMsg(&nats.Msg{Subject: "vmledger.cmd.h1.info", Reply: reply, Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		// An unknown verb's refusal is not sent there either.
		if err := opc.PublishMsg(&nats.Msg{Subject: "vmledger.cmd.h1.nosuch", Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	// Ordered behind the three on the same connections: once its handler
	// ran, theirs would have.
	if err := bus.NewClient(opc, "h1").Call(ctx, "info", nil, nil); err != nil {
		t.Fatal(err)
	}
	if v := <-calls; v != "info" {
		t.Fatalf("handler ran %s", v)
	}
	select {
	case v := <-calls:
		t.Fatalf("the agent ran %s for a request whose reply subject is not an inbox", v)
	case <-time.After(500 * time.Millisecond):
	}
	if m, err := evts.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("the agent published %q on %s for the operator", m.Data, m.Subject)
	}
}

// The history service does not answer on such a reply subject either.
func TestHistoryReplySubjectNotAnInbox(t *testing.T) {
	st := fakeLog{bustest.NewStore()}
	_, cli := agent(t, st, false)
	evts, err := cli.SubscribeSync("vmledger.evt.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.PublishMsg(&nats.Msg{Subject: bus.HistorySubject(host), Reply: "vmledger.evt." + host + ".d.defined", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	// Served one at a time, in order: this page comes after that request.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.NewClient(cli, host).History(ctx, bus.HistoryRequest{}); err != nil {
		t.Fatal(err)
	}
	if m, err := evts.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("history answered on %s: %q", m.Subject, m.Data)
	}
}
