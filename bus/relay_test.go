package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// plainEvent is how a third-party subscriber would see an event: its own
// struct, decoded by hand, nothing from vmledger imported.
type plainEvent struct {
	Seq     uint64          `json:"seq"`
	Domain  string          `json:"domain"`
	Version uint64          `json:"version"`
	Type    string          `json:"type"`
	Host    string          `json:"host"`
	Payload json.RawMessage `json:"payload"`
}

// recorder collects what a plain subscriber receives, checking each
// message's subject and headers against its body.
type recorder struct {
	mu   sync.Mutex
	seqs []uint64
	bad  []string
}

func (r *recorder) handle(m *nats.Msg) {
	var e plainEvent
	err := json.Unmarshal(m.Data, &e)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.bad = append(r.bad, "undecodable: "+err.Error())
	case m.Subject != "vmledger.evt."+host+"."+e.Domain+"."+e.Type:
		r.bad = append(r.bad, "subject "+m.Subject+" for "+e.Domain+"/"+e.Type)
	case m.Header.Get("Vmledger-Seq") != strconv.FormatUint(e.Seq, 10):
		r.bad = append(r.bad, "Vmledger-Seq "+m.Header.Get("Vmledger-Seq")+" for seq "+strconv.FormatUint(e.Seq, 10))
	case m.Header.Get("Nats-Msg-Id") != host+"-"+strconv.FormatUint(e.Seq, 10):
		r.bad = append(r.bad, "Nats-Msg-Id "+m.Header.Get("Nats-Msg-Id"))
	case e.Version == 0 || len(e.Payload) == 0:
		r.bad = append(r.bad, "incomplete event")
	}
	r.seqs = append(r.seqs, e.Seq)
}

func (r *recorder) snapshot() ([]uint64, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...), append([]string(nil), r.bad...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

// checkExactly fails unless seqs is exactly 1..n in order.
func checkExactly(t *testing.T, seqs []uint64, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Errorf("got %d events, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("event #%d has seq %d, want %d (out of order, duplicate or gap)", i, s, i+1)
		}
	}
}

// c1: a plain nats.go subscriber sees every event, in order, exactly once
// (no outage here, so not even duplicates).
func TestRelayPlainSubscriberSeesEverything(t *testing.T) {
	const total = 5000
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			st := be.open(t)
			e, nc := embedded(t)
			sub := bustest.Connect(t, e.ClientURL())
			var rec recorder
			if _, err := sub.Subscribe("vmledger.evt."+host+".>", rec.handle); err != nil {
				t.Fatal(err)
			}
			if err := sub.Flush(); err != nil {
				t.Fatal(err)
			}
			relay := runRelay(t, nc, st, bus.RelayOptions{})

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := appendConcurrently(ctx, st, 8, total); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "all events", func() bool { return rec.count() >= total })
			time.Sleep(50 * time.Millisecond) // room for a stray duplicate to show up
			seqs, bad := rec.snapshot()
			if len(bad) > 0 {
				t.Fatalf("%d bad messages, first: %s", len(bad), bad[0])
			}
			checkExactly(t, seqs, total)
			if lag := relay.Lag(); lag != 0 {
				t.Errorf("lag %d after everything was received", lag)
			}
			if got := relay.Published(); got != total {
				t.Errorf("Published() = %d, want %d", got, total)
			}
		})
	}
}

// The relay saves its position in batches, saves it on stop, and a new
// relay resumes from it instead of republishing the log.
func TestRelayPositionBatchedAndResumed(t *testing.T) {
	const total = 3000
	st := bustest.NewStore()
	e, nc := embedded(t)
	sub := bustest.Connect(t, e.ClientURL())
	var rec recorder
	if _, err := sub.Subscribe("vmledger.evt."+host+".>", rec.handle); err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()

	ctx, cancel := context.WithCancel(context.Background())
	r := bus.NewRelay(nc, st, bus.RelayOptions{Host: host, PersistEvery: 1000, PersistInterval: time.Hour})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if err := appendConcurrently(context.Background(), fakeLog{st}, 4, total); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "first relay", func() bool { return rec.count() >= total })
	// Receipt by a subscriber can precede the relay's confirming flush; a
	// batch cancelled before its confirmation is (rightly) not counted.
	waitFor(t, 10*time.Second, "confirmation", func() bool { return r.Published() >= total })
	if w := st.PositionWrites(); w > total/1000+1 {
		t.Errorf("%d position writes for %d events: not batched", w, total)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if pos, _ := st.RelayPosition(context.Background()); pos != total {
		t.Fatalf("position after stop = %d, want %d", pos, total)
	}

	// More events while no relay runs; the next relay publishes only those.
	if err := appendConcurrently(context.Background(), fakeLog{st}, 2, 10); err != nil {
		t.Fatal(err)
	}
	runRelay(t, nc, st, bus.RelayOptions{})
	waitFor(t, 10*time.Second, "second relay", func() bool { return rec.count() >= total+10 })
	time.Sleep(50 * time.Millisecond)
	seqs, _ := rec.snapshot()
	checkExactly(t, seqs, total+10)
}

// An idle relay persists its position after PersistInterval, without a
// further commit to wake it.
func TestRelayPersistsWhenIdle(t *testing.T) {
	st := bustest.NewStore()
	_, nc := embedded(t)
	runRelay(t, nc, st, bus.RelayOptions{PersistEvery: 1 << 20, PersistInterval: 50 * time.Millisecond})
	if _, err := (fakeLog{st}).appendEvent(context.Background(), bustest.Event(domainsN(1)[0], host, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "idle persist", func() bool {
		pos, _ := st.RelayPosition(context.Background())
		return pos == 1
	})
}

func TestRelayStopsOnReadError(t *testing.T) {
	st := bustest.NewStore()
	_, nc := embedded(t)
	boom := errors.New("disk on fire")
	if _, err := st.Append(context.Background(), bustest.Event(domainsN(1)[0], host, 1)); err != nil {
		t.Fatal(err)
	}
	st.FailReads(boom)
	r := bus.NewRelay(nc, st, bus.RelayOptions{Host: host})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the read error", err)
	}
}

func TestRelayRejectsBadHost(t *testing.T) {
	_, nc := embedded(t)
	for _, h := range []string{"", "a.b", "a*", "a b", ">"} {
		err := bus.NewRelay(nc, bustest.NewStore(), bus.RelayOptions{Host: h}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "host") {
			t.Errorf("host %q: Run = %v, want a host error", h, err)
		}
	}
}

// A failing position write is not fatal: events keep flowing, and the
// position is saved once writes work again.
func TestRelaySurvivesPositionWriteFailures(t *testing.T) {
	st := bustest.NewStore()
	e, nc := embedded(t)
	sub := bustest.Connect(t, e.ClientURL())
	var rec recorder
	if _, err := sub.Subscribe("vmledger.evt."+host+".>", rec.handle); err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()
	st.FailPositionWrites(errors.New("read-only file system"))
	runRelay(t, nc, st, bus.RelayOptions{PersistEvery: 10, PersistInterval: 10 * time.Millisecond})
	if err := appendConcurrently(context.Background(), fakeLog{st}, 2, 100); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "events despite failing position writes", func() bool { return rec.count() >= 100 })
	st.FailPositionWrites(nil)
	waitFor(t, 10*time.Second, "position saved", func() bool {
		pos, _ := st.RelayPosition(context.Background())
		return pos == 100
	})
}

// WaitPublished returns once the server confirmed everything up to a
// sequence (woken by the relay, not by polling), and with the context's
// error when that does not happen in time (NATS away).
func TestRelayWaitPublished(t *testing.T) {
	st := fakeLog{bustest.NewStore()}
	_, nc := embedded(t)
	relay := runRelay(t, nc, st, bus.RelayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := appendConcurrently(ctx, st, 2, 50); err != nil {
		t.Fatal(err)
	}
	if err := relay.WaitPublished(ctx, 50); err != nil {
		t.Fatalf("WaitPublished(50): %v", err)
	}
	if relay.Published() < 50 || relay.Lag() != 0 {
		t.Fatalf("after WaitPublished: published %d lag %d", relay.Published(), relay.Lag())
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if err := relay.WaitPublished(short, 51); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitPublished past the log's end: %v, want a deadline error", err)
	}
}
