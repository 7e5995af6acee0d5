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

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// Issue 7, defect 3: a log that already holds an event of 1.8 MB of JSON
// (written with the store directly, as an older agent could) stalls
// nothing. The relay publishes a bounded placeholder in its place and
// goes on; history pages past it; Follow delivers it, from history and
// live, as an Event with a bus.Truncated payload.
func TestOversizeEventDoesNotStallReaders(t *testing.T) {
	st := openBolt(t, false)
	doms := domainsN(2)
	ctx := context.Background()
	appendAll := func(evs ...domains.Event) {
		t.Helper()
		for _, e := range evs {
			if _, err := st.appendEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	big := bustest.BigDefined(doms[1], host, "big", 300<<10)
	if b, _ := json.Marshal(big); len(b) < 1800<<10 {
		t.Fatalf("test event is only %d bytes of JSON", len(b))
	}
	appendAll(bustest.Event(doms[0], host, 1), big, bustest.Event(doms[0], host, 3))

	e, nc := embedded(t)
	sub := bustest.Connect(t, e.ClientURL())
	var mu sync.Mutex
	var msgs []*nats.Msg
	if _, err := sub.Subscribe("vmledger.evt."+host+".>", func(m *nats.Msg) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	hs, err := bus.StartHistory(ctx, nc, st, bus.HistoryOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hs.Stop(context.Background()) })
	relay := runRelay(t, nc, st, bus.RelayOptions{})

	// The relay: every sequence on the wire, the big one as a placeholder
	// that a plain subscriber can recognise by header or body.
	waitFor(t, 30*time.Second, "three messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(msgs) >= 3 })
	mu.Lock()
	for i, m := range msgs[:3] {
		if got := m.Header.Get(bus.HeaderSeq); got != strconv.Itoa(i+1) {
			t.Fatalf("message %d has seq %s", i, got)
		}
	}
	ph := msgs[1]
	mu.Unlock()
	if h := ph.Header.Get(bus.HeaderTruncated); h == "" || len(ph.Data) > 4<<10 || !strings.Contains(string(ph.Data), `"truncated":{`) {
		t.Fatalf("placeholder: header %q, %d bytes: %.300s", h, len(ph.Data), ph.Data)
	}
	var plain struct {
		Seq       uint64 `json:"seq"`
		Domain    string `json:"domain"`
		Type      string `json:"type"`
		Truncated struct {
			Bytes int `json:"bytes"`
		} `json:"truncated"`
	}
	if err := json.Unmarshal(ph.Data, &plain); err != nil || plain.Seq != 2 || plain.Domain != doms[1].String() || plain.Type != "defined" || plain.Truncated.Bytes < 1800<<10 {
		t.Fatalf("placeholder %+v (%v): want seq 2, its domain, type and size", plain, err)
	}
	if relay.Truncated() == 0 {
		t.Error("Truncated() = 0")
	}
	waitFor(t, 10*time.Second, "relay confirmation", func() bool { return relay.Published() == 3 })

	// History: every page fits, and the pager gets past the event.
	c := bus.NewClient(bustest.Connect(t, e.ClientURL()), host)
	page, err := c.History(ctx, bus.HistoryRequest{})
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var seqs []uint64
	for {
		for _, ev := range page.Events {
			seqs = append(seqs, ev.Seq)
		}
		if !page.More {
			break
		}
		if page, err = c.History(ctx, bus.HistoryRequest{After: page.Next}); err != nil {
			t.Fatalf("history after %d: %v", page.Next, err)
		}
	}
	checkExactly(t, seqs, 3)

	// Follow: from history, then live across a second big event.
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got []domains.Event
	caughtUp := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(fctx, bus.FollowOptions{}, func(ev domains.Event) error {
			got = append(got, ev)
			if len(got) == 3 {
				close(caughtUp)
			}
			if len(got) == 5 {
				return errEnough
			}
			return nil
		})
	}()
	select {
	case <-caughtUp:
	case err := <-done:
		t.Fatalf("Follow ended after %d events: %v", len(got), err)
	}
	appendAll(bustest.BigDefined(doms[1], host, "big", 300<<10), bustest.Event(doms[0], host, 5))
	if err := <-done; !errors.Is(err, errEnough) {
		t.Fatalf("Follow = %v after %d events", err, len(got))
	}
	for i, ev := range got {
		_, truncated := ev.Payload.(bus.Truncated)
		if ev.Seq != uint64(i+1) || truncated != (i == 1 || i == 3) {
			t.Errorf("followed event %d: seq %d, payload %T", i, ev.Seq, ev.Payload)
		}
		if truncated && (ev.Domain != doms[1] || ev.Type != domains.TypeDefined || ev.Version == 0) {
			t.Errorf("placeholder lost the envelope: %+v", ev)
		}
	}
}

// Issue 7, defect 3: the guard the agent installs refuses, with an
// invalid error and before the log sees it, an event whose JSON form
// could exceed MaxEventBytes, measured with the widest seq, version and
// time the log could give it; one byte less is accepted.
func TestGuardRefusesOversizeAppend(t *testing.T) {
	const maxPayload = 64 << 10
	st := openBolt(t, false)
	log := bus.GuardEventLog(st.EventLog(), bus.CheckEventSize(host, func() int64 { return maxPayload }))
	dom := uuid.New()
	limit := bus.MaxEventBytes(maxPayload)
	// An event whose JSON is exactly `limit` bytes at the widest seq and
	// version: 'a' encodes as one byte, so the path sets the size.
	withPath := func(n int) domains.Event {
		e := bustest.BigDefined(dom, host, "g", 1)
		cfg := e.Payload.(domains.Defined).Config
		cfg.Disks[0].Path = "/" + strings.Repeat("a", n)
		e.Payload = domains.Defined{Config: cfg}
		return e
	}
	probe := withPath(0)
	probe.Seq, probe.Version = ^uint64(0), ^uint64(0)
	probe.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	b, _ := json.Marshal(probe)
	fits := limit - len(b)

	ctx := context.Background()
	for _, n := range []int{fits + 1, 300 << 10} {
		_, err := log.Append(ctx, domains.AppendRequest{Domain: dom, Events: []domains.Event{withPath(n)}})
		if !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), "bytes as JSON") {
			t.Fatalf("path of %d bytes: %v, want an invalid error naming the size", n, err)
		}
		if len(err.Error()) > 1024 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	}
	if st.LastSeq() != 0 {
		t.Fatalf("refused appends wrote %d events", st.LastSeq())
	}
	if _, err := log.Append(ctx, domains.AppendRequest{Domain: dom, Events: []domains.Event{withPath(fits)}}); err != nil {
		t.Fatalf("an event of exactly the limit: %v", err)
	}
	evs, err := st.ReadAfter(ctx, 0, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read back: %d events, %v", len(evs), err)
	}
	if b, _ := json.Marshal(evs[0]); len(b) > limit {
		t.Fatalf("accepted event is %d bytes, limit %d", len(b), limit)
	}
}
