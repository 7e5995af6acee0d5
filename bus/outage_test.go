package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// gatedLog holds the relay's reads while closed. Core NATS keeps nothing
// for a subscriber that has not re-subscribed yet, so when the server
// comes back the test lets the relay go only once its own subscriber is
// back: what is then tested is the relay alone (nothing lost, in order),
// not a race between two reconnecting clients.
type gatedLog struct {
	testLog
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedLog) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

func (g *gatedLog) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

func (g *gatedLog) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.testLog.ReadAfter(ctx, after, limit)
}

// appendSteadily appends n events, one every ~200µs, counting them.
func appendSteadily(ctx context.Context, st testLog, n int, count *atomic.Int64) error {
	dom := domainsN(1)[0]
	for i := range n {
		if _, err := st.appendEvent(ctx, bustest.Event(dom, host, int64(i))); err != nil {
			return err
		}
		count.Add(1)
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// d: the relay publishes to an external nats-server (Debian's package),
// which is stopped mid-stream and started again on the same port while
// appends go on. Every event committed meanwhile arrives, in order: after
// dropping duplicates by sequence there is no gap.
func TestRelaySurvivesExternalServerRestart(t *testing.T) {
	const total = 3000
	x := bustest.StartExternal(t)
	st := &gatedLog{testLog: openBolt(t, true)} // fsync off: the disk is not under test
	relay := runRelay(t, connect(t, x.URL()), st, bus.RelayOptions{})

	sub := bustest.Connect(t, x.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	var mu sync.Mutex
	var got []uint64
	dups := 0
	if _, err := sub.Subscribe("vmledger.evt."+host+".>", func(m *nats.Msg) {
		var e plainEvent
		_ = jsonUnmarshal(m.Data, &e)
		mu.Lock()
		defer mu.Unlock()
		if n := len(got); n > 0 && e.Seq <= got[n-1] {
			dups++ // the subscriber's dedupe rule: drop what it has seen
			return
		}
		got = append(got, e.Seq)
	}); err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var appended atomic.Int64
	done := make(chan error, 1)
	go func() { done <- appendSteadily(ctx, st, total, &appended) }()

	waitFor(t, 30*time.Second, "a third of the events", func() bool { return received() >= total/3 })
	x.Stop() // SIGTERM: the server flushes what it already routed, then goes
	atStop := appended.Load()
	st.close()
	waitFor(t, 30*time.Second, "appends during the outage", func() bool { return appended.Load() >= atStop+300 })
	x.Start()
	reconnected := sub.StatusChanged(nats.CONNECTED)
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		if !sub.IsConnected() {
			t.Fatal("subscriber did not reconnect")
		}
	}
	if err := sub.Flush(); err != nil { // its subscription is back on the server
		t.Fatal(err)
	}
	st.open()

	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every event", func() bool { return received() >= total })
	mu.Lock()
	defer mu.Unlock()
	t.Logf("stopped after %d appends, %d more during the outage; %d duplicates dropped; relay lag %d",
		atStop, 300, dups, relay.Lag())
	checkExactly(t, got, total)
}

// Follow under a crash of the server (SIGKILL, so messages in flight are
// lost for real): calling Follow again from the last sequence seen, as
// documented, ends with every event exactly once and in order.
func TestFollowAcrossServerCrash(t *testing.T) {
	const total = 2000
	x := bustest.StartExternal(t)
	st := fakeLog{bustest.NewStore()}
	agentNC := connect(t, x.URL())
	runRelay(t, agentNC, st, bus.RelayOptions{})
	hs, err := bus.StartHistory(context.Background(), agentNC, st, bus.HistoryOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Stop(context.Background()) })
	cliNC := connect(t, x.URL())
	c := bus.NewClient(cliNC, host)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var appended atomic.Int64
	done := make(chan error, 1)
	go func() { done <- appendSteadily(ctx, st, total, &appended) }()

	var seqs []uint64
	var last uint64
	restarts := 0
	killed := false
	for last < total {
		err := c.Follow(ctx, bus.FollowOptions{After: last}, func(e domains.Event) error {
			seqs = append(seqs, e.Seq)
			last = e.Seq
			if !killed && last == total/3 {
				killed = true
				go func() {
					x.Kill()
					time.Sleep(300 * time.Millisecond)
					x.Start()
				}()
			}
			if last == total {
				return errEnough
			}
			return nil
		})
		switch {
		case errors.Is(err, errEnough):
		case errors.Is(err, domains.ErrUnavailable):
			restarts++
			if restarts > 1000 {
				t.Fatalf("Follow keeps failing: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("Follow = %v", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("Follow restarted %d times", restarts)
	if !killed {
		t.Fatal("the server was never killed")
	}
	checkExactly(t, seqs, total)
}
