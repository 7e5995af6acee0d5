package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// Offline replay of a large log (acceptance d of docs/replay.md): what a
// tool pays to open an agent's file read-only and rebuild every
// projection, beside the floor, a raw bbolt cursor over the same events.
//
//	go test ./store -run '^$' -bench OfflineReplay -benchtime 5x

const (
	benchDomains = 1000
	benchPer     = 1000 // events per domain: 1,000,000 in all
	benchChunk   = 100  // events per append, so domains interleave
)

// benchCycle is what follows "defined", repeated: every step legal.
var benchCycle = []func(k int) domains.Payload{
	func(k int) domains.Payload {
		return domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 1000 + k, ClockBase: 3600}
	},
	func(k int) domains.Payload { return domains.RTCChanged{Offset: int64(k), Adjustment: int64(3600 + k)} },
	func(int) domains.Payload { return domains.Paused{Reason: domains.PauseUser} },
	func(int) domains.Payload { return domains.Resumed{Reason: "user"} },
	func(int) domains.Payload { return domains.Stopped{Reason: domains.StopDestroyed} },
}

// writeBenchLog appends benchDomains × benchPer events and closes the file.
func writeBenchLog(b *testing.B, path string) uint64 {
	b.Helper()
	ctx := context.Background()
	s, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]uuid.UUID, benchDomains)
	for i := range ids {
		ids[i] = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "bench-%d", i))
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	evs := make([]domains.Event, benchChunk)
	for from := 0; from < benchPer; from += benchChunk {
		for d, id := range ids {
			for j := range evs {
				k := from + j
				var p domains.Payload
				if k == 0 {
					p = domains.Defined{Config: domains.Config{Name: fmt.Sprintf("vm-%d", d), UUID: id, MemoryMiB: 64, VCPUs: 1,
						Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC}}}
				} else {
					p = benchCycle[(k-1)%len(benchCycle)](k)
				}
				evs[j] = domains.NewEvent(id, t0.Add(time.Duration(k)*time.Second), "", "bench", p)
			}
			req := store.AppendRequest{Domain: id, ExpectedVersion: uint64(from), Events: evs}
			if _, err := s.Append(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	last := s.LastSeq()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return last
}

func BenchmarkOfflineReplay(b *testing.B) {
	path := filepath.Join(b.TempDir(), "events.db")
	t0 := time.Now()
	n := writeBenchLog(b, path)
	if fi, err := os.Stat(path); err == nil {
		b.Logf("wrote %d events (%d MiB) in %v", n, fi.Size()>>20, time.Since(t0).Round(time.Millisecond))
	}
	// Wall-clock events/s, and the process's CPU time per event: on a
	// shared, loaded machine the second is the steadier figure.
	var cpu0 time.Duration
	start := func() { cpu0 = cpuTime(b) }
	perSec := func(b *testing.B) {
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n)/float64(b.N), "cpu-ns/event")
	}

	// The floor: one read transaction, a cursor over the events, no decoding.
	b.Run("raw-cursor", func(b *testing.B) {
		start()
		for b.Loop() {
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			var seen uint64
			var bytes int
			err = db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket([]byte("events")).Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					seen++
					bytes += len(v)
				}
				return nil
			})
			db.Close()
			if err != nil || seen != n {
				b.Fatalf("%d events, %v", seen, err)
			}
		}
		perSec(b)
	})

	// What a tool does: open read-only, Replay, fold into projections.
	b.Run("open+replay+projection", func(b *testing.B) {
		start()
		for b.Loop() {
			s, err := store.OpenReadOnly(path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			p := domains.NewProjection()
			err = s.Replay(context.Background(), 0, p.Apply)
			s.Close()
			if err != nil || p.LastSeq() != n || p.Len() != benchDomains {
				b.Fatalf("replayed to %d, %d domains: %v", p.LastSeq(), p.Len(), err)
			}
		}
		perSec(b)
	})

	// Moving a log: export to a file, import it into a new one.
	exp := filepath.Join(b.TempDir(), "export.jsonl")
	b.Run("export", func(b *testing.B) {
		start()
		for b.Loop() {
			s, err := store.OpenReadOnly(path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(exp)
			if err != nil {
				b.Fatal(err)
			}
			err = store.Export(context.Background(), s, f)
			s.Close()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		perSec(b)
	})
	b.Run("import", func(b *testing.B) {
		start()
		for i := 0; b.Loop(); i++ {
			f, err := os.Open(exp)
			if err != nil {
				b.Skip("run with the export sub-benchmark")
			}
			got, err := store.Import(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("imported-%d.db", i)), f)
			f.Close()
			if err != nil || uint64(got) != n {
				b.Fatalf("imported %d: %v", got, err)
			}
		}
		perSec(b)
	})
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
