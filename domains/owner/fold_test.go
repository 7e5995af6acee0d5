package owner_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// gatedLog is a MemLog whose ReadAfter, once armed, reports that it is
// reading and waits for the gate: a log read that takes its time.
type gatedLog struct {
	*domainstest.MemLog
	armed   atomic.Bool
	reading chan struct{} // closed when an armed read starts
	gate    chan struct{} // closed to let it finish
	reads   atomic.Int64
}

func (l *gatedLog) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	l.reads.Add(1)
	if l.armed.CompareAndSwap(true, false) {
		close(l.reading)
		select {
		case <-l.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.MemLog.ReadAfter(ctx, after, limit)
}

// A commit that must read the log to fold (another appender took the
// sequences before its own) reads it without the projection's lock:
// info (Get) and list (Rows) answer while the read waits. Before, the
// whole catch-up ran under the exclusive lock and every read waited.
func TestReadsDoNotWaitForACatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := &gatedLog{MemLog: domainstest.NewMemLog(), reading: make(chan struct{}), gate: make(chan struct{})}
	svc := owner.NewService(owner.Options{Log: log, Host: "h"})
	t.Cleanup(svc.Close)
	if _, err := svc.Define(ctx, "", cfgNamed("vm", uuidA, clockUTC)); err != nil {
		t.Fatal(err)
	}
	if n := log.reads.Load(); n != 0 {
		t.Fatalf("a commit with nothing before it read the log %d times", n)
	}
	// Behind the service's back (another writer of the log): seq 2.
	other := cfgNamed("other", uuid.New(), clockUTC)
	if _, err := log.Append(ctx, domains.AppendRequest{Domain: other.UUID, Events: []domains.Event{
		domains.NewEvent(other.UUID, t0, "", "h", domains.Defined{Config: other})}}); err != nil {
		t.Fatal(err)
	}
	log.armed.Store(true)
	defined := make(chan error, 1)
	go func() {
		_, err := svc.Define(ctx, "", cfgNamed("third", uuidB, clockUTC))
		defined <- err
	}()
	select {
	case <-log.reading:
	case <-ctx.Done():
		t.Fatal("the define never read the log for the sequence before its own")
	}
	answered := make(chan error, 1)
	go func() {
		if _, err := svc.Get("vm"); err != nil {
			answered <- err
			return
		}
		if rows := svc.Rows(""); len(rows) != 1 || rows[0].Name != "vm" {
			answered <- fmt.Errorf("rows during the catch-up: %+v", rows)
			return
		}
		answered <- nil
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("info waited for the catch-up's log read")
	}
	close(log.gate)
	if err := <-defined; err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vm", "other", "third"} {
		if _, err := svc.Get(name); err != nil {
			t.Errorf("after the catch-up: %v", err)
		}
	}
	checkLiveIsReplay(t, log.MemLog, svc)
}

// Commits of many domains at once fold every event exactly once and in
// sequence order, whether the events a commit holds are folded directly
// or read from the log because others took earlier sequences and had not
// folded yet (appenders held back after their commit make such gaps).
func TestConcurrentCommitsFoldOnceInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	mem := domainstest.NewMemLog()
	log := &gatedLog{MemLog: mem}
	var appends atomic.Int64
	mem.OnAppend(func(domains.AppendRequest, []uint64) {
		if appends.Add(1)%5 == 0 {
			time.Sleep(time.Millisecond) // committed, not yet folded
		}
	})
	svc := owner.NewService(owner.Options{Log: log, Host: "h"})
	t.Cleanup(svc.Close)
	var folded []uint64 // under the service's lock (SetOnApply)
	owner.SetOnApply(svc, func(e domains.Event) { folded = append(folded, e.Seq) })
	const callers, updates = 32, 10
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := cfgNamed(fmt.Sprintf("vm%02d", c), uuid.New(), clockUTC)
			for i := range updates + 1 {
				cfg.MemoryMiB = 256 + uint64(i)
				if _, err := svc.Define(ctx, "", cfg); err != nil {
					t.Error(err)
					return
				}
				// A reader among the writers (-race checks the locking).
				if _, err := svc.Get(cfg.Name); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := uint64(callers * (updates + 1))
	if got := mem.LastSeq(); got != total {
		t.Fatalf("log holds %d events, want %d", got, total)
	}
	if uint64(len(folded)) != total {
		t.Fatalf("%d events folded, want %d", len(folded), total)
	}
	for i, seq := range folded {
		if seq != uint64(i)+1 {
			t.Fatalf("fold %d was seq %d: folded %v", i, seq, folded)
		}
	}
	t.Logf("%d events, %d log reads (the rest folded as the commit held them)", total, log.reads.Load())
	checkLiveIsReplay(t, mem, svc)
}

// checkLiveIsReplay: the live projection is what replaying the log gives.
func checkLiveIsReplay(t *testing.T, log *domainstest.MemLog, svc *owner.Service) {
	t.Helper()
	p, err := log.Replay()
	if err != nil {
		t.Fatal(err)
	}
	if ok, diff := svc.Equal(p); !ok {
		t.Fatalf("live projection is not the replay: %s", diff)
	}
}

// Snapshots taken while commits fold are each the projection at one
// sequence: equal to the log replayed up to it (the copy is made under
// the folds' mutex, not the projection's lock; -race checks the rest).
func TestSnapshotsDuringCommits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	mem := domainstest.NewMemLog()
	svc := owner.NewService(owner.Options{Log: mem, Host: "h"})
	t.Cleanup(svc.Close)
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := cfgNamed(fmt.Sprintf("vm%d", c), uuid.New(), clockUTC)
			for i := range 20 {
				cfg.MemoryMiB = 256 + uint64(i)
				if _, err := svc.Define(ctx, "", cfg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	type snap struct {
		seq  uint64
		data []byte
	}
	var snaps []snap
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		seq, data, err := svc.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap{seq, data})
	}
	evs, err := mem.Events()
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		got, err := domains.UnmarshalSnapshot(sn.data)
		if err != nil {
			t.Fatal(err)
		}
		want := domains.NewProjection()
		for _, e := range evs[:sn.seq] {
			if err := want.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		if ok, diff := want.Equal(got); !ok || got.LastSeq() != sn.seq {
			t.Fatalf("snapshot at seq %d (last seq %d) is not the log up to it: %s", sn.seq, got.LastSeq(), diff)
		}
	}
	t.Logf("%d snapshots checked", len(snaps))
}
