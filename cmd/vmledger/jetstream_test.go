package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/store"
)

// TestAgentJetStreamExactlyOnce: an agent with --jetstream FLEET stores
// its events in the stream; a durable JetStream consumer reads some,
// the agent is SIGKILLed in the middle of a storm of defines (its relay
// position saved up to a second behind, so the restarted relay
// republishes), restarted, and (on Debian's nats-server) the server is
// killed and restarted under the running agent while it appends (the
// relay resumes after the outage). The durable consumer, from a new
// connection, then sees every sequence of the log exactly once, in
// order. On the embedded server (--nats-jetstream, the store under the
// state directory) and on Debian's nats-server with JetStream.
func TestAgentJetStreamExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("agent restarts and a NATS outage")
	}
	for _, tc := range []struct {
		name     string
		external bool
	}{{"embedded", false}, {"debian", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var srv *bustest.External
			args := []string{"--jetstream", "FLEET"}
			if tc.external {
				srv = bustest.StartExternalJetStream(t)
				args = append(args, "--nats-url", srv.URL())
			} else {
				args = append(args, "--nats-jetstream", "--nats-listen", "127.0.0.1:"+freeLoopbackPort(t))
			}
			a := startAgent(t, dir, args...)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()

			storms := func(a *agentProc, rounds int) {
				nc, err := nats.Connect(a.natsURL, nats.NoReconnect())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				var wg sync.WaitGroup
				for g := 0; g < 4; g++ {
					wg.Add(1)
					go func() { defer wg.Done(); storm(nc, rounds, g, func([]uint64, uuid.UUID, uint64) {}) }()
				}
				time.Sleep(400 * time.Millisecond)
				a.kill()
				wg.Wait()
			}
			cons := func(url string) jetstream.Consumer {
				c, err := jetStreamClient(t, url).CreateOrUpdateConsumer(ctx, "FLEET", jetstream.ConsumerConfig{Durable: "fleet", AckPolicy: jetstream.AckExplicitPolicy})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			a.mustCLI("define", writeFile(t, dir, "a.json", `{"name":"web-a","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
			seqs := takeSeqs(t, cons(a.natsURL), 1)
			storms(a, 0)

			a = startAgent(t, dir, args...)
			if tc.external {
				// The relay resumes after an outage of the server under it.
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := 0; i < 20; i++ {
						_, _, _ = a.cli("define", writeFile(t, dir, fmt.Sprintf("o%d.json", i), fmt.Sprintf(`{"name":"out-%d","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`, i)))
					}
				}()
				time.Sleep(200 * time.Millisecond)
				srv.Kill()
				time.Sleep(500 * time.Millisecond)
				srv.Start()
				<-done
				// The agent reconnects with backoff; then it serves again.
				waitForCLI(t, a, "list")
			}
			a.mustCLI("define", writeFile(t, dir, "b.json", `{"name":"web-b","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
			a.stop() // a clean stop waits for the relay to publish the rest
			last := logLastSeq(t, filepath.Join(dir, agent.DBFile))
			if last < 10 {
				t.Fatalf("only %d events: the storm did not storm", last)
			}
			url := ""
			if tc.external {
				url = srv.URL()
			} else {
				a = startAgent(t, dir, args...) // its embedded server holds the stream
				url = a.natsURL
			}
			seqs = append(seqs, takeSeqs(t, cons(url), int(last)-1)...)
			for i, s := range seqs {
				if s != uint64(i+1) {
					t.Fatalf("consumer's message %d is seq %d, want %d; all: %v", i, s, i+1, seqs)
				}
			}
			if len(seqs) != int(last) {
				t.Fatalf("consumer saw %d events, log has %d", len(seqs), last)
			}
		})
	}
}

// waitForCLI runs a CLI verb until it succeeds (30 s at most).
func waitForCLI(t *testing.T, a *agentProc, args ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code := a.cli(args...)
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmledger %v: exit %d after 30s: %s%s", args, code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jetStreamClient is a JetStream client on a plain connection to url,
// closed at the end of the test.
func jetStreamClient(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// takeSeqs fetches want messages from a durable consumer, acking each,
// then checks nothing more is there; it returns their Vmledger-Seq.
func takeSeqs(t *testing.T, c jetstream.Consumer, want int) []uint64 {
	t.Helper()
	var seqs []uint64
	deadline := time.Now().Add(60 * time.Second)
	for len(seqs) < want+1 && time.Now().Before(deadline) {
		wait := 2 * time.Second
		if len(seqs) >= want {
			wait = time.Second // anything now is one too many
		}
		batch, err := c.Fetch(want+1-len(seqs), jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			s, err := strconv.ParseUint(m.Headers().Get(bus.HeaderSeq), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", m.Subject(), err)
			}
			seqs = append(seqs, s)
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if n == 0 && len(seqs) >= want {
			break
		}
	}
	if len(seqs) != want {
		t.Fatalf("durable consumer got %d messages, want %d: %v", len(seqs), want, seqs)
	}
	return seqs
}

func logLastSeq(t *testing.T, db string) uint64 {
	t.Helper()
	s, err := store.Open(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.LastSeq()
}

// TestAgentRefusesJetStreamSetups: a JetStream setup that cannot work
// fails the start with exit 2 and says why: a bad stream name, embedded
// JetStream with an external server or with routes, a replica count out
// of range, and a stream that exists but does not capture this host's
// events.
func TestAgentRefusesJetStreamSetups(t *testing.T) {
	srv := bustest.StartExternalJetStream(t)
	js := jetStreamClient(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NARROW", Subjects: []string{"vmledger.evt.other.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad stream name", []string{"--jetstream", "a.b"}, "must be 1-64 letters"},
		{"embedded JetStream with an external server", []string{"--nats-jetstream", "--nats-url", srv.URL()}, "--nats-jetstream is the embedded server's"},
		{"embedded JetStream with routes", []string{"--nats-jetstream", "--nats-cluster-listen", "127.0.0.1:0"}, "single host"},
		{"replicas out of range", []string{"--jetstream", "FLEET", "--jetstream-replicas", "9"}, "want 1 to 5"},
		{"stream not capturing this host", []string{"--jetstream", "NARROW", "--nats-url", srv.URL()}, "not this host's events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr, code := agentRefuses(t, t.TempDir(), append([]string{"--accel", "none"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q in:\n%s", code, exitUsage, tc.want, stderr)
			}
		})
	}
}
