package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// ReadAfter returns acknowledged events only: never one past LastSeq, even
// while the writer is committing. (It once read whatever bbolt had, which
// included commits whose appenders had not been answered yet.)
func TestReadAfterStopsAtLastSeq(t *testing.T) {
	s := openTest(t, Options{NoSync: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGen(w)
			for v := uint64(0); ctx.Err() == nil; v++ {
				if _, err := s.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: v, Events: g.batch(1, "")}); err != nil {
					return
				}
			}
		}()
	}
	reads, beyond := 0, 0
	for ctx.Err() == nil {
		before := s.LastSeq()
		evs, err := s.ReadAfter(context.Background(), before, 64)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if len(evs) > 0 && evs[len(evs)-1].Seq > s.LastSeq() {
			beyond++ // returned an event its appender has not been told of
		}
	}
	wg.Wait()
	if beyond > 0 {
		t.Fatalf("%d of %d reads returned events past LastSeq", beyond, reads)
	}
	if s.LastSeq() < 100 {
		t.Fatalf("only %d appends: the test raced nothing", s.LastSeq())
	}
}
