package bus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// plainPage is the history reply as a hand-written client decodes it.
type plainPage struct {
	Events  []plainEvent `json:"events"`
	LastSeq uint64       `json:"last_seq"`
	Next    uint64       `json:"next"`
	More    bool         `json:"more"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// c2: a plain subscriber goes away in the middle of 10,000 appends, comes
// back, pages history with plain requests from the last sequence it saw,
// then keeps going live; dropping sequences it has seen, it ends with
// every sequence exactly once.
func TestPlainSubscriberResumesThroughHistory(t *testing.T) {
	const total = 10000
	for _, be := range []backend{
		{"fake", func(testing.TB) testLog { return fakeLog{bustest.NewStore()} }},
		// fsync off: ten thousand durable commits would test the disk.
		{"bbolt", func(tb testing.TB) testLog { return openBolt(tb, true) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			st := be.open(t)
			e, nc := embedded(t)
			runRelay(t, nc, st, bus.RelayOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			hs, err := bus.StartHistory(ctx, nc, st, bus.HistoryOptions{Host: host})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hs.Stop(context.Background()) })

			var got []uint64
			last := uint64(0)
			keep := func(seq uint64) {
				if seq > last { // the subscriber's whole dedupe rule
					got = append(got, seq)
					last = seq
				}
			}
			live := make(chan *nats.Msg, total)
			sub1 := bustest.Connect(t, e.ClientURL())
			if _, err := sub1.ChanSubscribe("vmledger.evt."+host+".>", live); err != nil {
				t.Fatal(err)
			}
			_ = sub1.Flush()

			appended := make(chan error, 1)
			go func() { appended <- appendConcurrently(ctx, st, 4, total) }()

			// Take about a tenth live, then vanish.
			for len(got) < total/10 {
				keep(seqOf(t, <-live))
			}
			sub1.Close()
			drain(live, keep, t)
			gone := last
			// Appends go on without us: stay away for at least a few pages.
			waitFor(t, time.Minute, "appends while away", func() bool { return st.LastSeq() >= min(gone+2500, total) })

			// Back: subscribe first, then page history from where we were.
			sub2 := bustest.Connect(t, e.ClientURL())
			if _, err := sub2.ChanSubscribe("vmledger.evt."+host+".>", live); err != nil {
				t.Fatal(err)
			}
			_ = sub2.Flush()
			pages := 0
			for {
				req, _ := json.Marshal(map[string]any{"after": last, "limit": 1000})
				m, err := sub2.Request("vmledger.api."+host+".history", req, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var p plainPage
				if err := json.Unmarshal(m.Data, &p); err != nil {
					t.Fatal(err)
				}
				if p.Error != nil {
					t.Fatalf("history error %s: %s", p.Error.Code, p.Error.Message)
				}
				if len(p.Events) > 1000 {
					t.Fatalf("page of %d events, limit was 1000", len(p.Events))
				}
				pages++
				for _, e := range p.Events {
					keep(e.Seq)
				}
				if !p.More {
					break
				}
			}
			if err := <-appended; err != nil {
				t.Fatal(err)
			}
			deadline := time.After(30 * time.Second)
			for last < total {
				select {
				case m := <-live:
					keep(seqOf(t, m))
				case <-deadline:
					t.Fatalf("stuck at seq %d of %d", last, total)
				}
			}
			t.Logf("left at seq %d, %d history pages", gone, pages)
			if gone >= total-100 {
				t.Fatalf("left at %d: the appends were over before the subscriber left; the test proves nothing", gone)
			}
			if pages < 2 {
				t.Errorf("only %d history page(s): paging not exercised", pages)
			}
			checkExactlyOnce(t, got, total)
		})
	}
}

func seqOf(t *testing.T, m *nats.Msg) uint64 {
	t.Helper()
	var e plainEvent
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatal(err)
	}
	return e.Seq
}

func drain(ch chan *nats.Msg, keep func(uint64), t *testing.T) {
	for {
		select {
		case m := <-ch:
			keep(seqOf(t, m))
		default:
			return
		}
	}
}

// checkExactlyOnce fails unless every sequence 1..n appears exactly once.
func checkExactlyOnce(t *testing.T, seqs []uint64, n int) {
	t.Helper()
	seen := make([]int, n+1)
	for _, s := range seqs {
		if s == 0 || s > uint64(n) {
			t.Fatalf("seq %d out of range", s)
		}
		seen[s]++
	}
	for s := 1; s <= n; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d seen %d times", s, seen[s])
		}
	}
}
