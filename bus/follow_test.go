package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

var errEnough = errors.New("enough")

// agent wires a store to a bus the way the agent does: relay (optional)
// and history service.
func agent(t *testing.T, st testLog, relay bool) (*nats.Conn, *nats.Conn) {
	t.Helper()
	e, nc := embedded(t)
	if relay {
		runRelay(t, nc, st, bus.RelayOptions{})
	}
	hs, err := bus.StartHistory(context.Background(), nc, st, bus.HistoryOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Stop(context.Background()) })
	return nc, bustest.Connect(t, e.ClientURL())
}

// follow runs Follow until fn has seen want events, returning their seqs.
func follow(t *testing.T, c *bus.Client, o bus.FollowOptions, want int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seqs []uint64
	err := c.Follow(ctx, o, func(e domains.Event) error {
		seqs = append(seqs, e.Seq)
		if len(seqs) == want {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Follow = %v after %d events", err, len(seqs))
	}
	return seqs
}

// History first, then live, while appends run: exactly once, in order.
func TestFollowHistoryThenLive(t *testing.T) {
	const total = 3000
	st := fakeLog{bustest.NewStore()}
	_, cli := agent(t, st, true)
	if err := appendConcurrently(context.Background(), st, 3, total/2); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(5 * time.Millisecond)
		doms := domainsN(1)
		var err error
		for i := total / 2; i < total && err == nil; i++ {
			_, err = st.appendEvent(context.Background(), bustest.Event(doms[0], host, int64(i)))
		}
		done <- err
	}()
	seqs := follow(t, bus.NewClient(cli, host), bus.FollowOptions{}, total)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkExactly(t, seqs, total)
}

// A live message that skips sequences makes Follow fetch the missing ones
// from history; duplicates are dropped.
func TestFollowRepairsGaps(t *testing.T) {
	st := fakeLog{bustest.NewStore()}
	_, cli := agent(t, st, false) // no relay: the test publishes by hand
	doms := domainsN(1)
	add := func(n int) {
		for range n {
			if _, err := st.appendEvent(context.Background(), bustest.Event(doms[0], host, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish := func(seq uint64) {
		evs, err := st.ReadAfter(context.Background(), seq-1, 1)
		if err != nil || len(evs) != 1 {
			t.Fatalf("read %d: %v", seq, err)
		}
		m := nats.NewMsg(bus.EventSubject(host, evs[0].Domain, evs[0].Type))
		m.Data, _ = json.Marshal(evs[0])
		m.Header.Set(bus.HeaderSeq, strconv.FormatUint(seq, 10))
		if err := cli.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	add(10)
	var seqs []uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- bus.NewClient(cli, host).Follow(ctx, bus.FollowOptions{After: 2}, func(e domains.Event) error {
			seqs = append(seqs, e.Seq)
			if e.Seq == 10 {
				close(ready)
			}
			if e.Seq == 16 {
				return errEnough
			}
			return nil
		})
	}()
	<-ready
	add(5)      // 11..15 committed, never published live
	publish(15) // gap 11..14: history
	publish(13) // duplicate
	publish(15) // duplicate
	add(1)      // 16
	publish(16) // next in line
	if err := <-errc; !errors.Is(err, errEnough) {
		t.Fatalf("Follow = %v", err)
	}
	want := []uint64{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if len(seqs) != len(want) {
		t.Fatalf("got %v, want %v", seqs, want)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("got %v, want %v", seqs, want)
		}
	}
}

func TestFollowFilters(t *testing.T) {
	st := fakeLog{bustest.NewStore()}
	_, cli := agent(t, st, true)
	doms := domainsN(3)
	// 300 events over 3 domains; every 4th is "paused".
	for i := range 300 {
		e := bustest.Event(doms[i%3], host, int64(i))
		if i%4 == 3 {
			e = domains.NewEvent(e.Domain, e.Time, "", host, domains.Paused{Reason: domains.PauseUser})
		}
		if _, err := st.appendEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	tests := []struct {
		name string
		o    bus.FollowOptions
		want func(seq uint64) bool
	}{
		{"domain", bus.FollowOptions{Domain: doms[1]}, func(s uint64) bool { return (s-1)%3 == 1 }},
		{"type", bus.FollowOptions{Types: []domains.Type{domains.TypePaused}}, func(s uint64) bool { return (s-1)%4 == 3 }},
		{"both", bus.FollowOptions{Domain: doms[2], Types: []domains.Type{domains.TypePaused}, After: 100},
			func(s uint64) bool { return s > 100 && (s-1)%3 == 2 && (s-1)%4 == 3 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []uint64
			for s := uint64(1); s <= 300; s++ {
				if tc.want(s) {
					want = append(want, s)
				}
			}
			got := follow(t, bus.NewClient(cli, host), tc.o, len(want))
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("got %v, want %v", got, want)
				}
			}
		})
	}
	err := bus.NewClient(cli, host).Follow(context.Background(), bus.FollowOptions{Types: []domains.Type{"nope"}}, nil)
	if !errors.Is(err, domains.ErrInvalid) {
		t.Fatalf("unknown type: %v", err)
	}
}
