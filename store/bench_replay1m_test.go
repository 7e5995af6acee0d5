package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
)

// The replay and agent-start benchmarks share one fixture: 1,000,000
// events over 1,000 domains (each: defined, then started, paused, resumed,
// rtc-changed, stopped, over and over), appended 100 per request with
// domains interleaved, and a snapshot 1,000 events before the end. It takes
// a while to build, so it is kept in os.TempDir under a name that carries
// fixtureVersion: bump it when the generator or the file format changes.
const (
	fixtureVersion = "store-bench-v1"
	fixtureDomains = 1000
	fixturePer     = 1000
	fixtureChunk   = 100
	fixtureEvents  = fixtureDomains * fixturePer
	fixtureSnapAt  = fixtureEvents - 1000
)

func fixture(b *testing.B) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("vmledger-%s.db", fixtureVersion))
	if fixtureOK(path) {
		return path
	}
	start := time.Now()
	tmp := path + ".building"
	_ = os.Remove(tmp)
	if err := buildFixture(tmp); err != nil {
		b.Fatalf("build fixture: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s in %v", path, time.Since(start).Round(time.Millisecond))
	return path
}

// fixtureOK tells whether a cached fixture is complete and readable by
// this build.
func fixtureOK(path string) bool {
	s, err := OpenReadOnly(path, Options{})
	if err != nil {
		return false
	}
	defer s.Close()
	seq, _, err := s.LatestSnapshot(context.Background())
	if err != nil || seq != fixtureSnapAt || s.LastSeq() != fixtureEvents {
		return false
	}
	evs, err := s.ReadAfter(context.Background(), fixtureEvents-1, 1)
	return err == nil && len(evs) == 1
}

func buildFixture(path string) error {
	ctx := context.Background()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		return err
	}
	defer s.Close()
	gens := make([]*gen, fixtureDomains)
	for i := range gens {
		gens[i] = newGen(i)
	}
	// A few appenders so that group commits form, as in the agent.
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for from := 0; from < fixturePer; from += fixtureChunk {
				for d := w; d < fixtureDomains; d += 8 {
					g := gens[d]
					_, err := s.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: uint64(from), Events: g.batch(fixtureChunk, "")})
					if err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			return err
		}
	}
	p := domains.NewProjection()
	stop := fmt.Errorf("stop")
	err = s.Replay(ctx, 0, func(e domains.Event) error {
		if err := p.Apply(e); err != nil {
			return err
		}
		if e.Seq == fixtureSnapAt {
			return stop
		}
		return nil
	})
	if err != stop {
		return fmt.Errorf("replay to the snapshot: %v", err)
	}
	data, err := p.MarshalSnapshot()
	if err != nil {
		return err
	}
	if err := s.SaveSnapshot(ctx, fixtureSnapAt, data); err != nil {
		return err
	}
	return s.Close()
}

// perEvent reports events/s and CPU time per event for n events per op.
func perEvent(b *testing.B, n int, cpu0 time.Duration) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n)/float64(b.N), "cpu-ns/event")
}

func BenchmarkReplay1M(b *testing.B) {
	path := fixture(b)
	ctx := context.Background()
	s, err := OpenReadOnly(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	// The floor: one read transaction, a cursor over the events, values
	// touched but not decoded.
	b.Run("raw-cursor", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			n, sum := 0, 0
			_ = s.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketEvents).Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					n++
					sum += int(v[len(v)-1])
				}
				return nil
			})
			if n != fixtureEvents {
				b.Fatalf("%d events", n)
			}
		}
		perEvent(b, fixtureEvents, cpu0)
	})
	b.Run("replay-decode", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			n := 0
			if err := s.Replay(ctx, 0, func(domains.Event) error { n++; return nil }); err != nil || n != fixtureEvents {
				b.Fatalf("%d events: %v", n, err)
			}
		}
		perEvent(b, fixtureEvents, cpu0)
	})
	b.Run("replay-projection", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			p := domains.NewProjection()
			if err := s.Replay(ctx, 0, p.Apply); err != nil || p.Len() != fixtureDomains {
				b.Fatalf("%d domains: %v", p.Len(), err)
			}
		}
		perEvent(b, fixtureEvents, cpu0)
	})
}

// BenchmarkAgentStart is what the agent does at start: open the log for
// writing, load the newest snapshot, replay the 1,000 events after it.
// Beside it the same without a snapshot (a full replay).
func BenchmarkAgentStart(b *testing.B) {
	path := fixture(b)
	ctx := context.Background()
	b.Run("snapshot+tail", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			p, err := LoadProjection(ctx, s)
			if err != nil || p.LastSeq() != fixtureEvents {
				b.Fatalf("projection at %v: %v", p, err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/start")
	})
	// The same with the file dropped from the page cache before each start
	// (posix_fadvise DONTNEED on this file only): a host just booted.
	b.Run("snapshot+tail-cold", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			if err := dropCache(path); err != nil {
				b.Skipf("cannot drop the page cache: %v", err)
			}
			b.StartTimer()
			start := time.Now()
			s, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := LoadProjection(ctx, s); err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/start")
	})
	b.Run("full-replay", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			p := domains.NewProjection()
			if err := s.Replay(ctx, 0, p.Apply); err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/start")
	})
}

// dropCache asks the kernel to drop path's pages from the page cache.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const fadvDontNeed = 4 // POSIX_FADV_DONTNEED
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		return errno
	}
	return nil
}
