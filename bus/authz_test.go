package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// identities makes one nkey identity per role, each seed in a 0600 file.
func identities(t *testing.T) ([]bus.Identity, map[bus.Role]string) {
	t.Helper()
	dir := t.TempDir()
	var ids []bus.Identity
	files := map[bus.Role]string{}
	for _, r := range bus.Roles() {
		seed, err := bus.NewSeed()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := bus.PublicKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		files[r] = filepath.Join(dir, string(r)+".nk")
		if err := os.WriteFile(files[r], append(seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bus.Identity{Role: r, NKey: pub})
	}
	return ids, files
}

// dialer connects to url as a role.
func dialer(t *testing.T, url string, files map[bus.Role]string) func(bus.Role) *nats.Conn {
	return func(r bus.Role) *nats.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		nc, err := bus.Connect(ctx, url, bus.ConnectOptions{NKeyFile: files[r], InboxPrefix: r.InboxPrefix(), FailFast: true})
		if err != nil {
			t.Fatalf("connect as %s: %v", r, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
}

var testReadVerbs = []string{"info", "list"}

func TestIdentitiesEnforcedByServer(t *testing.T) { checkIdentities(t, onEmbedded(t)) }

// TestIdentitiesExternalServerConfig: Debian's nats-server with the
// authorization block of ServerConfig (the example in docs/bus.md)
// enforces the same rights.
func TestIdentitiesExternalServerConfig(t *testing.T) { checkIdentities(t, onExternal(t)) }

// onEmbedded starts an embedded server knowing one identity per role and
// returns a dialer for them.
func onEmbedded(t *testing.T) func(bus.Role) *nats.Conn {
	ids, files := identities(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1, Identities: ids, ReadVerbs: testReadVerbs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return dialer(t, e.ClientURL(), files)
}

// onExternal is onEmbedded on Debian's nats-server, configured by
// ServerConfig for host h1.
func onExternal(t *testing.T) func(bus.Role) *nats.Conn {
	ids, files := identities(t)
	conf, err := bus.ServerConfig("h1", ids, testReadVerbs)
	if err != nil {
		t.Fatal(err)
	}
	x := bustest.StartExternalConfig(t, conf)
	return dialer(t, x.URL(), files)
}

// checkIdentities: the server, not our client, keeps each role to its
// rights (docs/bus.md, Identities).
func checkIdentities(t *testing.T, as func(bus.Role) *nats.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	agent := as(bus.RoleAgent)
	calls := make(chan string, 16)
	svc, err := bus.StartCommands(ctx, agent, bus.HandlerFunc(func(ctx context.Context, verb string, body []byte) (any, error) {
		calls <- verb
		return "ok from the agent", nil
	}), bus.CommandOptions{Host: "h1", Verbs: []string{"info", "list", "define", "destroy"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })

	// Read-only: read verbs answered, changing verbs refused fast by the
	// server (well before the call's deadline), the handler never called.
	roc := as(bus.RoleReadOnly)
	ro := bus.NewClient(roc, "h1")
	evts, err := roc.SubscribeSync("vmledger.evt.h1.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := roc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := agent.Publish("vmledger.evt.h1.d.defined", []byte("event")); err != nil {
		t.Fatal(err)
	}
	if m, err := evts.NextMsg(10 * time.Second); err != nil || string(m.Data) != "event" {
		t.Fatalf("readonly follows events: %v", err)
	}
	var got string
	if err := ro.Call(ctx, "info", nil, &got); err != nil || got != "ok from the agent" {
		t.Fatalf("readonly info: %q, %v", got, err)
	}
	<-calls
	for _, verb := range []string{"define", "destroy"} {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		err := ro.Call(cctx, verb, nil, nil)
		late := cctx.Err()
		ccancel()
		if !errors.Is(err, nats.ErrPermissionViolation) || !errors.Is(err, domains.ErrInvalid) || late != nil {
			t.Fatalf("readonly %s: %v (deadline passed: %v), want a fast permissions violation", verb, err, late)
		}
	}
	select {
	case v := <-calls:
		t.Fatalf("the agent ran %s for a read-only identity", v)
	default:
	}

	// Operator: commands work; a fake responder in the agent's queue
	// group and a forged event are refused.
	opc := as(bus.RoleOperator)
	op := bus.NewClient(opc, "h1")
	if err := op.Call(ctx, "destroy", nil, &got); err != nil {
		t.Fatalf("operator destroy: %v", err)
	}
	<-calls
	subErr := make(chan error, 4)
	opc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { subErr <- err })
	if _, err := opc.QueueSubscribe("vmledger.cmd.h1.define", "q", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := opc.Publish("vmledger.evt.h1.x.y", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Subscription to "vmledger.cmd.h1.define"`, `Publish to "vmledger.evt.h1.x.y"`} {
		select {
		case err := <-subErr:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), want) {
				t.Fatalf("operator: %v, want a violation for %s", err, want)
			}
		case <-ctx.Done():
			t.Fatalf("operator: no violation for %s", want)
		}
	}

	// Consoles: only the console identity reads them.
	watch := func(r bus.Role) (*nats.Conn, chan error, *nats.Subscription) {
		nc := as(r)
		errs := make(chan error, 4)
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
		sub, err := nc.SubscribeSync("vmledger.console.h1.*.out")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		return nc, errs, sub
	}
	_, opErrs, opSub := watch(bus.RoleOperator)
	_, roErrs, roSub := watch(bus.RoleReadOnly)
	_, _, conSub := watch(bus.RoleConsole)
	if err := agent.Publish("vmledger.console.h1.d.out", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if m, err := conSub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "secret" {
		t.Fatalf("console identity: %v", err)
	}
	for name, errs := range map[string]chan error{"operator": opErrs, "readonly": roErrs} {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("%s console subscription: %v", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s console subscription not refused", name)
		}
	}
	for _, s := range []*nats.Subscription{opSub, roSub} {
		if m, err := s.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("a non-console identity read the console: %q", m.Data)
		}
	}

}
