package owner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Defines of different names commit side by side: the log sees two
// appends in flight at once (with one lock for all defines it never did,
// and defines ran at one fsync each). Defines of one name still
// exclude each other: of eight concurrent defines of "same" under eight
// UUIDs exactly one succeeds, the others are conflicts.
func TestDefinesOfDifferentNamesRunTogether(t *testing.T) {
	e := newEnv(t)
	var inFlight, peak atomic.Int32
	both := make(chan struct{})
	var once sync.Once
	e.log.OnAppend(func(domains.AppendRequest, []uint64) {
		if n := inFlight.Add(1); n >= 2 {
			once.Do(func() { close(both) })
		}
		defer inFlight.Add(-1)
		peak.Store(max(peak.Load(), inFlight.Load()))
		select {
		case <-both:
		case <-time.After(5 * time.Second):
		}
	})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.svc.Define(e.ctx, "", domains.Config{Name: fmt.Sprintf("vm%d", i), MemoryMiB: 16, VCPUs: 1, Clock: clockUTC}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-both:
	default:
		t.Fatalf("two defines of different names never had their appends in flight together (peak %d)", peak.Load())
	}

	e.log.OnAppend(nil)
	var ok, conflict atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Define(context.Background(), "", domains.Config{Name: "same", UUID: uuid.New(), MemoryMiB: 16, VCPUs: 1, Clock: clockUTC})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, domains.ErrConflict):
				conflict.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 7 {
		t.Fatalf("8 defines of one name: %d succeeded, %d conflicts; want 1 and 7", ok.Load(), conflict.Load())
	}
}
