package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// Helpers for the live migration tests (migrate_test.go, and the failure
// tests built on them): two guest agents, alpha (the source) and beta
// (the destination), each with its own state and run directories, on
// their own nodes of a three-node cluster of Debian's nats-server, and a
// plain nats.go connection on the third node.

// migrationPair is two agents on one cluster.
type migrationPair struct {
	cl       *bustest.Cluster
	src, dst *agentProc
	nc       *nats.Conn // plain nats.go, on the third node
}

// migrationAgent starts a guest agent named host on url.
func migrationAgent(t testing.TB, host, url, accel string, extra ...string) *agentProc {
	t.Helper()
	requireQEMU(t)
	run := shortRunDir(t)
	a := startAgentEnv(t, t.TempDir(), nil, append([]string{"--accel", accel, "--run-dir", run, "--host", host, "--nats-url", url}, extra...)...)
	a.host, a.runDir = host, run
	return a
}

// startMigrationPair starts the cluster and both agents, and waits until
// each agent's commands reach the other through the routes.
func startMigrationPair(t testing.TB, accel string) *migrationPair {
	t.Helper()
	cl := bustest.StartCluster(t, 3)
	p := &migrationPair{cl: cl,
		src: migrationAgent(t, "alpha", cl.Nodes[0].URL(), accel),
		dst: migrationAgent(t, "beta", cl.Nodes[1].URL(), accel)}
	nc, err := nats.Connect(cl.Nodes[2].URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	for _, a := range []*agentProc{p.src, p.dst} {
		waitAgent(t, nc, a.host)
	}
	return p
}

// waitAgent waits until host's agent answers list through nc's node.
func waitAgent(t testing.TB, nc *nats.Conn, host string) {
	t.Helper()
	c := bus.NewClient(nc, host)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Call(ctx, "list", nil, nil)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s unreachable through the cluster: %v", host, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logOf is one host's log of a domain (read over the bus: the domain
// may no longer be defined there).
func logOf(t testing.TB, nc *nats.Conn, host, id string) []domains.Event {
	t.Helper()
	c := bus.NewClient(nc, host)
	var out []domains.Event
	after := uint64(0)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		page, err := c.History(ctx, bus.HistoryRequest{After: after, Domain: uuid.MustParse(id)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if !page.More {
			return out
		}
		after = page.Next
	}
}

// migrationPath is a log's migration-state transitions, "idle>begun>...",
// a recovery marked "!".
func migrationPath(evs []domains.Event) string {
	var ms []domains.MigrationState
	for _, e := range evs {
		if m, ok := e.Payload.(domains.MigrationState); ok {
			ms = append(ms, m)
		}
	}
	return pathOf(ms)
}

func pathOf(ms []domains.MigrationState) string {
	var b strings.Builder
	for i, m := range ms {
		if i == 0 {
			b.WriteString(m.From)
		}
		b.WriteString(">" + m.To)
		if m.Reason != "" {
			b.WriteString("!")
		}
	}
	return b.String()
}

// tapPath is migrationPath of what a plain nats.go subscriber saw.
func tapPath(tap *eventTap) string {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	var ms []domains.MigrationState
	for _, e := range tap.evs {
		var m domains.MigrationState
		if e.Type == string(domains.TypeMigrationState) && json.Unmarshal(e.Payload, &m) == nil {
			ms = append(ms, m)
		}
	}
	return pathOf(ms)
}

// typesOf lists the events' types, "a,b,c".
func typesOf(evs []domains.Event) string {
	ts := make([]string, len(evs))
	for i, e := range evs {
		ts[i] = string(e.Type)
	}
	return strings.Join(ts, ",")
}

// waitPath waits until host's log of the domain shows the transitions.
func waitPath(t testing.TB, nc *nats.Conn, host, id, want string, within time.Duration) []domains.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := logOf(t, nc, host, id)
		if got := migrationPath(evs); got == want {
			return evs
		} else if time.Now().After(deadline) {
			t.Fatalf("%s's log: migration path %q, want %q\nevents: %s", host, got, want, typesOf(evs))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
