package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/migrate/pagemix"
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
	return startMigrationPairWith(t, accel, nil, nil)
}

// startMigrationPairWith is startMigrationPair with extra agent flags for
// the source and the destination (a --qemu wrapper, say).
func startMigrationPairWith(t testing.TB, accel string, srcExtra, dstExtra []string) *migrationPair {
	t.Helper()
	return startMigrationPairOn(t, bustest.StartCluster(t, 3), accel, srcExtra, dstExtra)
}

// startMigrationPairOn is startMigrationPairWith on cl (one with
// JetStream, say).
func startMigrationPairOn(t testing.TB, cl *bustest.Cluster, accel string, srcExtra, dstExtra []string) *migrationPair {
	t.Helper()
	p := &migrationPair{cl: cl,
		src: migrationAgent(t, "alpha", cl.Nodes[0].URL(), accel, srcExtra...),
		dst: migrationAgent(t, "beta", cl.Nodes[1].URL(), accel, dstExtra...)}
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
	// An agent failing over to another node is unreachable for a moment.
	unreachable := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		page, err := c.History(ctx, bus.HistoryRequest{After: after, Domain: uuid.MustParse(id)})
		cancel()
		if domains.CodeOf(err) == domains.CodeUnavailable && time.Now().Before(unreachable) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
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

// killQEMUs SIGKILLs every QEMU running from a's run directory and
// returns how many there were.
func killQEMUs(t testing.TB, a *agentProc) int {
	t.Helper()
	pids := qemusIn(a.runDir)
	for _, pid := range pids {
		_ = exec.Command("kill", "-KILL", pid).Run()
	}
	return len(pids)
}

// waitNoQEMU waits until no QEMU runs from a's run directory.
func waitNoQEMU(t testing.TB, a *agentProc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(qemusIn(a.runDir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU left on %s: %v", a.host, qemusIn(a.runDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inOrder checks that evs hold events of these types in this order
// (others between are allowed) and returns them.
func inOrder(t testing.TB, host string, evs []domains.Event, types ...domains.Type) []domains.Event {
	t.Helper()
	var out []domains.Event
	i := 0
	for _, e := range evs {
		if i < len(types) && e.Type == types[i] {
			out = append(out, e)
			i++
		}
	}
	if i < len(types) {
		t.Fatalf("%s's log: %s\nwant in order: %v", host, typesOf(evs), types)
	}
	return out
}

// waitJobSent waits until the domain's job reports stream bytes sent.
func waitJobSent(t testing.TB, a *agentProc, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var r struct {
			Job *domains.JobInfo `json:"job"`
		}
		if err := json.Unmarshal([]byte(a.mustCLI("job", "info", name, "--json")), &r); err != nil {
			t.Fatal(err)
		}
		if r.Job != nil && r.Job.Progress != nil && r.Job.Progress.Done > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bytes sent by %s's job within %s: %+v", name, within, r.Job)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runFilled defines and starts the tiny guest on the source and fills its
// RAM with the page mix of seed.
func runFilled(t *testing.T, p *migrationPair, name string, seed uint64) (string, *consoleTap) {
	t.Helper()
	id := defineTiny(t, p.src, name, utcVariable)
	con := tapConsole(t, p.nc, "alpha", id)
	p.src.mustCLI("start", name)
	con.waitLine(t, "RTC ", 60*time.Second)
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(p.src, id))), seed); err != nil {
		t.Fatal(err)
	}
	return id, con
}

// failsOver checks the outcome of a migration that failed before the
// hand-off: the source cancelled with the reason and runs the guest, its
// RAM intact; the destination tore down, dropped the definition it made
// and runs no QEMU; the source's job-failed carries why.
func failsOver(t *testing.T, p *migrationPair, id, name string, con *consoleTap, seed uint64, why string) {
	t.Helper()
	sl := logOf(t, p.nc, "alpha", id)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.HasSuffix(migrationPath(sl), ">cancelled!") {
		if time.Now().After(deadline) {
			t.Fatalf("alpha's migration path %q, want it to end cancelled", migrationPath(sl))
		}
		time.Sleep(200 * time.Millisecond)
		sl = logOf(t, p.nc, "alpha", id)
	}
	jf := inOrder(t, "alpha", sl, domains.TypeJobStarted, domains.TypeJobFailed)[1].Payload.(domains.JobFailed)
	if jf.Reason != domains.JobError || !strings.Contains(jf.Error, why) {
		t.Fatalf("alpha's job-failed %+v, want reason error naming %q", jf, why)
	}
	dl := logOf(t, p.nc, "beta", id)
	for !strings.HasSuffix(migrationPath(dl), ">torn-down!") {
		if time.Now().After(deadline) {
			t.Fatalf("beta's migration path %q, want it to end torn-down", migrationPath(dl))
		}
		time.Sleep(200 * time.Millisecond)
		dl = logOf(t, p.nc, "beta", id)
	}
	inOrder(t, "beta", dl, domains.TypeDefined, domains.TypeJobStarted, domains.TypeJobFailed, domains.TypeUndefined)
	t.Logf("alpha %s, beta %s; alpha's job-failed: %s", migrationPath(sl), migrationPath(dl), jf.Error)
	if d := infoOf(t, p.src, name); d.State != domains.StateRunning || !d.OwnedHere() {
		t.Fatalf("alpha: %s, migration %+v", d.State, d.Migration)
	}
	readRTC(t, con)
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(p.src, id))), seed); err != nil {
		t.Fatalf("RAM on alpha: %v", err)
	}
	waitNoQEMU(t, p.dst, 10*time.Second)
	if out := p.dst.mustCLI("list"); strings.Contains(out, name) {
		t.Fatalf("beta still defines %s:\n%s", name, out)
	}
}
