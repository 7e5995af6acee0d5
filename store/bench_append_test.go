package store

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Append benchmarks. Each runs beside raw bbolt doing the same work (one
// event plus its index entry, encoded in the appender's goroutine) in the
// same process and on the same disk, so the ratios in docs/performance.md
// compare like with like.

// batchCounter is an Observer that sums group-commit sizes.
type batchCounter struct{ commits, events, nanos atomic.Int64 }

func (c *batchCounter) Committed(events, _ int, d time.Duration) {
	c.commits.Add(1)
	c.events.Add(int64(events))
	c.nanos.Add(int64(d))
}

func (c *batchCounter) report(b *testing.B) {
	n := float64(max(1, c.commits.Load()))
	b.ReportMetric(float64(c.events.Load())/n, "events/commit")
	b.ReportMetric(float64(c.nanos.Load())/n/1e3, "commit-µs")
}

// cpuTime is the CPU time (user+system) the process has used so far: on a
// shared machine, CPU per event says more about efficiency than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runConcurrent runs b.N appends from workers goroutines, each owning a
// domain; appendOne appends one event for worker w.
func runConcurrent(b *testing.B, workers int, appendOne func(w int, g *gen) error) {
	gens := make([]*gen, workers)
	for i := range gens {
		gens[i] = newGen(i)
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := appendOne(w, gens[w]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
}

func BenchmarkAppendConcurrent64(b *testing.B) {
	const workers = 64
	for _, tc := range []struct {
		name string
		opts Options
	}{{"store", Options{}}, {"store-nosync", Options{NoSync: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			obs := &batchCounter{}
			tc.opts.Observer = obs
			s := openTest(b, tc.opts)
			ctx := context.Background()
			runConcurrent(b, workers, func(_ int, g *gen) error {
				v := uint64(g.n)
				_, err := s.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: v, Events: g.batch(1, "")})
				return err
			})
			obs.report(b)
		})
	}
	b.Run("bbolt-update", func(b *testing.B) {
		db := openRaw(b)
		runConcurrent(b, workers, func(_ int, g *gen) error {
			return db.Update(func(tx *bolt.Tx) error { return rawPut(tx, g) })
		})
	})
	b.Run("bbolt-batch", func(b *testing.B) {
		db := openRaw(b)
		runConcurrent(b, workers, func(_ int, g *gen) error {
			// Batch may run fn twice; encode outside, put inside.
			return db.Batch(func(tx *bolt.Tx) error { return rawPut(tx, g) })
		})
	})
}

func BenchmarkAppendSingle(b *testing.B) {
	b.Run("store", func(b *testing.B) {
		s := openTest(b, Options{})
		ctx := context.Background()
		g := newGen(1)
		measureLatency(b, func() error {
			v := uint64(g.n)
			_, err := s.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: v, Events: g.batch(1, "")})
			return err
		})
	})
	b.Run("bbolt-update", func(b *testing.B) {
		db := openRaw(b)
		g := newGen(1)
		measureLatency(b, func() error {
			return db.Update(func(tx *bolt.Tx) error { return rawPut(tx, g) })
		})
	})
	b.Run("fdatasync", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		page := make([]byte, 4096)
		i := int64(0)
		measureLatency(b, func() error {
			i++
			if _, err := f.WriteAt(page, (i%256)*4096); err != nil {
				return err
			}
			return syscall.Fdatasync(int(f.Fd()))
		})
	})
}

// measureLatency runs op b.N times and reports the p50 and p99 latency.
func measureLatency(b *testing.B, op func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// openRaw opens a bbolt file with the store's options and its buckets.
func openRaw(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, boltOptions(Options{}, false))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// rawPut does what one append of one event does: encode, put the event
// under the next sequence and the index entry. The generator is advanced
// only when the transaction will commit (Batch may retry fn).
func rawPut(tx *bolt.Tx, g *gen) error {
	events, index := tx.Bucket(bucketEvents), tx.Bucket(bucketIndex)
	seq, err := events.NextSequence()
	if err != nil {
		return err
	}
	save := g.n
	e := g.next("")
	g.n = save
	e.Version = uint64(save + 1)
	val, err := e.MarshalBinary(nil)
	if err != nil {
		return err
	}
	if err := events.Put(u64(seq), val); err != nil {
		return err
	}
	key := binary.BigEndian.AppendUint64(append([]byte{}, g.id[:]...), e.Version)
	if err := index.Put(key, u64(seq)); err != nil {
		return err
	}
	g.n = save + 1
	return nil
}
