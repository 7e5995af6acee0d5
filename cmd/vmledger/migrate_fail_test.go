package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// Acceptance b's failures between agents (docs/migration.md, Failures
// between agents) and acceptance a's JetStream consumer.

// restartMigrationAgent starts a's host again on its state and run
// directories, on url.
func restartMigrationAgent(t testing.TB, a *agentProc, url, accel string) *agentProc {
	t.Helper()
	n := startAgentEnv(t, a.stateDir, nil, "--accel", accel, "--run-dir", a.runDir, "--host", a.host, "--nats-url", url)
	n.host, n.runDir = a.host, a.runDir
	return n
}

// runsOn waits until exactly one of the pair runs the guest (its agent
// says running and owned, one QEMU in its run directory) and the other
// has neither, and returns that host; it fails if that does not settle.
func runsOn(t *testing.T, p *migrationPair, name string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var on, bad []string
		for _, a := range []*agentProc{p.src, p.dst} {
			q := qemusIn(a.runDir)
			running := false
			if out, _, code := a.cli("info", name, "--json"); code == 0 {
				var d domains.Domain
				running = json.Unmarshal([]byte(out), &d) == nil && d.State == domains.StateRunning && d.OwnedHere()
			}
			switch {
			case running && len(q) == 1:
				on = append(on, a.host)
			case running || len(q) > 0:
				bad = append(bad, fmt.Sprintf("%s: running %v, QEMUs %v", a.host, running, q))
			}
		}
		if len(bad) == 0 && len(on) == 1 {
			return on[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest runs on %v (%s): want exactly one host, cleanly", on, strings.Join(bad, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jobFailed is the last job-failed of a log.
func jobFailed(t *testing.T, host string, evs []domains.Event) domains.JobFailed {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if jf, ok := evs[i].Payload.(domains.JobFailed); ok {
			return jf
		}
	}
	t.Fatalf("%s's log has no job-failed: %s", host, typesOf(evs))
	return domains.JobFailed{}
}

// TestMigrateDestinationKilledInFinish: the destination agent is frozen
// (SIGSTOP) once prepared, so the stream runs QEMU to QEMU, the source
// hands off and waits in finish with nobody answering; then that agent is
// SIGKILLed and restarted. The restarted destination tears its side down
// before anything else (its paused incoming QEMU killed, torn-down
// recorded), the source's repeated finish gets the release of the grant
// from the destination's log, and the guest runs on at the source: never
// on both, never on neither, no QEMU left on the destination, and both
// job-failed events say why.
func TestMigrateDestinationKilledInFinish(t *testing.T) {
	p := startMigrationPair(t, "tcg")
	src := p.src
	const seed = 404
	id, con := runFilled(t, p, "fin", seed)
	// Capped, so perform outlasts the freeze below.
	src.mustCLI("migrate", "fin", "--to", "beta", "--bandwidth", "1", "--detach")
	waitPath(t, p.nc, "beta", id, "idle>preparing>prepared", 60*time.Second)
	if err := p.dst.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitPath(t, p.nc, "alpha", id, "idle>begun>performing>handed-off", 120*time.Second)
	time.Sleep(time.Second) // the source is asking for finish
	p.dst.kill()
	p.dst = restartMigrationAgent(t, p.dst, p.cl.Nodes[1].URL(), "tcg")

	sl := waitPath(t, p.nc, "alpha", id, "idle>begun>performing>handed-off>cancelled!", 150*time.Second)
	if jf := jobFailed(t, "alpha", sl); jf.Kind != domains.JobMigrate || !strings.Contains(jf.Error, "restarted") {
		t.Fatalf("alpha: job-failed %+v, want the migrate job failed with the destination's reason", jf)
	}
	dl := waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>torn-down!", 30*time.Second)
	if jf := jobFailed(t, "beta", dl); jf.Reason != domains.JobInterrupted {
		t.Fatalf("beta: job-failed %+v, want interrupted", jf)
	}
	if on := runsOn(t, p, "fin"); on != "alpha" {
		t.Fatalf("guest runs on %s, want alpha", on)
	}
	readRTC(t, con) // alive and resumed
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
		t.Fatalf("RAM on alpha: %v", err)
	}
	src.mustCLI("destroy", "fin")
}

// TestMigrateDestinationKilledFinishing: the destination agent SIGKILLed
// the moment a plain subscriber sees its finishing (the grant taken),
// then restarted: wherever the kill landed (before the resume, between
// the resume and its record, after the record), the guest ends on exactly
// one host, that host's log says so (finished and the source confirmed,
// or torn-down and the source cancelled), and no QEMU is left elsewhere.
func TestMigrateDestinationKilledFinishing(t *testing.T) {
	p := startMigrationPair(t, "tcg")
	const seed = 405
	id, con := runFilled(t, p, "fk", seed)
	tap := tapEvents(t, p.nc, "beta", id)
	dcon := tapConsole(t, p.nc, "beta", id)
	p.src.mustCLI("migrate", "fk", "--to", "beta", "--detach")
	deadline := time.Now().Add(120 * time.Second)
	for !strings.HasPrefix(tapPath(tap), "idle>preparing>prepared>finishing") {
		if time.Now().After(deadline) {
			t.Fatalf("beta never finishing: %q", tapPath(tap))
		}
		time.Sleep(time.Millisecond)
	}
	p.dst.kill()
	p.dst = restartMigrationAgent(t, p.dst, p.cl.Nodes[1].URL(), "tcg")
	on := runsOn(t, p, "fk")
	t.Logf("killed at %q; the guest ends on %s", tapPath(tap), on)
	switch on {
	case "beta":
		waitPath(t, p.nc, "alpha", id, "idle>begun>performing>handed-off>confirmed", 150*time.Second)
		waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>finishing>finished", 10*time.Second)
		if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(p.dst, id))), seed); err != nil {
			t.Fatalf("RAM on beta: %v", err)
		}
		readRTC(t, dcon)
		p.dst.mustCLI("destroy", "fk")
	default:
		sl := waitPath(t, p.nc, "alpha", id, "idle>begun>performing>handed-off>cancelled!", 150*time.Second)
		if jf := jobFailed(t, "alpha", sl); !strings.Contains(jf.Error, "restarted") {
			t.Fatalf("alpha: job-failed %+v, want the destination's restart as the reason", jf)
		}
		waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>finishing>torn-down!", 10*time.Second)
		if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(p.src, id))), seed); err != nil {
			t.Fatalf("RAM on alpha: %v", err)
		}
		readRTC(t, con)
		p.src.mustCLI("destroy", "fk")
	}
}

// TestMigrateNATSNodeKilled: during a bandwidth-capped perform, the NATS
// node under the source's agent, or under the destination's, is
// SIGKILLed; the agents fail over to the other nodes. The migration
// either ends on the destination (whole RAM there) or the guest keeps
// running on the source (whole RAM, job-failed with a reason): never
// both, never neither, no stray QEMU.
func TestMigrateNATSNodeKilled(t *testing.T) {
	for _, tc := range []struct {
		name string
		node int
	}{{"source-node", 0}, {"destination-node", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			p := startMigrationPair(t, "tcg")
			src := p.src
			// The CLI too must find a live node.
			p.src.natsURL, p.dst.natsURL = p.cl.URLs(), p.cl.URLs()
			const seed = 7
			id, con := runFilled(t, p, "nd", seed)
			dcon := tapConsole(t, p.nc, "beta", id)
			src.mustCLI("migrate", "nd", "--to", "beta", "--bandwidth", "2", "--detach")
			waitJobSent(t, src, "nd", 60*time.Second)
			p.cl.Nodes[tc.node].Kill()

			var sl []domains.Event
			deadline := time.Now().Add(180 * time.Second)
			for {
				sl = logOf(t, p.nc, "alpha", id)
				path := migrationPath(sl)
				if strings.HasSuffix(path, ">confirmed") || strings.HasSuffix(path, "!") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("alpha's migration did not end: %q", path)
				}
				time.Sleep(300 * time.Millisecond)
			}
			switch on := runsOn(t, p, "nd"); on {
			case "beta":
				waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>finishing>finished", 30*time.Second)
				if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(p.dst, id))), seed); err != nil {
					t.Fatalf("RAM on beta: %v", err)
				}
				readRTC(t, dcon)
				p.dst.mustCLI("destroy", "nd")
			default:
				if jf := jobFailed(t, "alpha", sl); jf.Error == "" {
					t.Fatalf("alpha: job-failed without a reason: %+v", jf)
				}
				if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
					t.Fatalf("RAM on alpha: %v", err)
				}
				readRTC(t, con)
				t.Logf("the migration failed cleanly: %s", migrationPath(sl))
				src.mustCLI("destroy", "nd")
			}
		})
	}
}

// TestMigrateJetStreamConsumer (acceptance a, the fleet view): both agents
// relay into one JetStream stream (--jetstream FLEET, three replicas) on
// the three-node cluster of Debian's nats-server with JetStream; after a
// migration a durable consumer filtered on migration-state events sees
// each host's transitions once, in order.
func TestMigrateJetStreamConsumer(t *testing.T) {
	cl := bustest.StartClusterJetStream(t, 3)
	flags := []string{"--jetstream", "FLEET", "--jetstream-replicas", "3"}
	p := startMigrationPairOn(t, cl, "tcg", flags, flags)
	id := defineTiny(t, p.src, "jsm", utcVariable)
	con := tapConsole(t, p.nc, "alpha", id)
	p.src.mustCLI("start", "jsm")
	con.waitLine(t, "RTC ", 60*time.Second)
	p.src.mustCLI("migrate", "jsm", "--to", "beta", "--no-progress")
	if on := runsOn(t, p, "jsm"); on != "beta" {
		t.Fatalf("guest on %s after the migration", on)
	}
	js, err := jetstream.New(p.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(ctx, "FLEET", jetstream.ConsumerConfig{Durable: "migrations",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "vmledger.evt.*." + id + "." + string(domains.TypeMigrationState)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alpha": "idle>begun>performing>handed-off>confirmed", "beta": "idle>preparing>prepared>finishing>finished"}
	got := map[string][]domains.MigrationState{}
	seen := map[string]bool{}
	for n := 0; n < 20 && (pathOf(got["alpha"]) != want["alpha"] || pathOf(got["beta"]) != want["beta"]); {
		batch, err := c.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			k++
			var e struct {
				Host    string                 `json:"host"`
				Payload domains.MigrationState `json:"payload"`
			}
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				t.Fatal(err)
			}
			if msgID := m.Headers().Get(bus.HeaderMsgID); seen[msgID] {
				t.Fatalf("%s twice", msgID)
			} else {
				seen[msgID] = true
			}
			got[e.Host] = append(got[e.Host], e.Payload)
			_ = m.Ack()
		}
		if k == 0 {
			n++
		}
	}
	for h, w := range want {
		if g := pathOf(got[h]); g != w {
			t.Fatalf("JetStream consumer: %s's migration states %q, want %q", h, g, w)
		}
	}
	p.dst.mustCLI("destroy", "jsm")
}
