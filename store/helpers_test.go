package store

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// lifecycle is the repeating cycle after "defined": every step is legal in
// the state the previous one left, so projections accept the stream.
var lifecycle = []func(k int) domains.Payload{
	func(k int) domains.Payload {
		return domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 1000 + k, ClockBase: 7}
	},
	func(int) domains.Payload { return domains.Paused{Reason: domains.PauseUser} },
	func(int) domains.Payload { return domains.Resumed{Reason: "user"} },
	func(k int) domains.Payload { return domains.RTCChanged{Offset: int64(k), Adjustment: int64(k + 7)} },
	func(int) domains.Payload { return domains.Stopped{Reason: domains.StopDestroyed} },
}

// gen produces one domain's events in a legal order.
type gen struct {
	id   uuid.UUID
	name string
	n    int // events produced so far
}

func newGen(i int) *gen {
	return &gen{id: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "vm-%d", i)), name: fmt.Sprintf("vm-%d", i)}
}

func (g *gen) next(cmdID string) domains.Event {
	k := g.n
	g.n++
	var p domains.Payload
	if k == 0 {
		p = domains.Defined{Config: domains.Config{
			Name: g.name, UUID: g.id, MemoryMiB: 64, VCPUs: 1,
			Clock: domains.Clock{Offset: domains.OffsetVariable, Basis: domains.BasisUTC},
		}}
	} else {
		p = lifecycle[(k-1)%len(lifecycle)](k)
	}
	return domains.NewEvent(g.id, epoch.Add(time.Duration(k)*time.Second), cmdID, "host-a", p)
}

func (g *gen) batch(n int, cmdID string) []domains.Event {
	out := make([]domains.Event, n)
	for i := range out {
		out[i] = g.next(cmdID)
	}
	return out
}

// openTest opens a store in a fresh directory. At cleanup it checks the
// live store, closes it, then checks the file again read-only: every test
// leaves a consistent log behind.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "log.db"), opts)
}

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { checkAndClose(t, s) })
	return s
}

func checkAndClose(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if !closed {
		if err := s.Check(ctx); err != nil {
			t.Errorf("Check (live): %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	ro, err := OpenReadOnly(s.Path(), Options{})
	if err != nil {
		t.Errorf("OpenReadOnly for check: %v", err)
		return
	}
	defer ro.Close()
	if err := ro.Check(ctx); err != nil {
		t.Errorf("Check (read-only): %v", err)
	}
}

func mustAppend(t testing.TB, s *Store, req AppendRequest) []uint64 {
	t.Helper()
	seqs, err := s.Append(context.Background(), req)
	if err != nil {
		t.Fatalf("Append %s@%d: %v", req.Domain, req.ExpectedVersion, err)
	}
	return seqs
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameEvents compares events by their JSON form (the wire contract).
func sameEvents(t testing.TB, got, want []domains.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if g, w := jsonOf(t, got[i]), jsonOf(t, want[i]); g != w {
			t.Fatalf("event %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// gate is an Observer that can hold the writer right after a commit, so a
// test can queue several appends and have them committed as one batch.
type gate struct {
	hold    chan struct{} // receive from it to block; closed means pass
	batches chan int      // batch sizes, if non-nil
}

func newGate() *gate { return &gate{hold: make(chan struct{}), batches: make(chan int, 1024)} }

func (g *gate) Committed(events, batch int, _ time.Duration) {
	select {
	case g.batches <- batch:
	default:
	}
	<-g.hold
}

// waitQueued waits until n appends wait in the writer's queue.
func waitQueued(t testing.TB, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d appends queued", len(s.reqs), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
