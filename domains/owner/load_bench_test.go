package owner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
	"github.com/vmledger/vmledger/store"
)

// Sizes of BenchmarkServiceLoad: issue 14's load (docs/performance.md,
// "The domain service under load").
const (
	loadDomains = 10_000
	loadActive  = 100
	loadCallers = 32
)

// commitCounter counts the store's group commits: appends per fsync.
type commitCounter struct{ commits, appends atomic.Int64 }

func (c *commitCounter) Committed(_ int, batch int, _ time.Duration) {
	c.commits.Add(1)
	c.appends.Add(int64(batch))
}

// readCounter counts the service's log reads (catch-ups).
type readCounter struct {
	domains.EventLog
	reads atomic.Int64
}

func (l *readCounter) ReadAfter(ctx context.Context, after uint64, limit int) ([]domains.Event, error) {
	l.reads.Add(1)
	return l.EventLog.ReadAfter(ctx, after, limit)
}

// BenchmarkServiceLoad measures the service's CPU per command with 10,000
// domains defined (100 running, on the fake driver) over a real store
// (bbolt in a temporary directory, fsync on), at 32 callers: the verbs go
// through api.Handler and their replies are JSON-encoded, as the agent
// does per command, without NATS.
//
//	go test ./domains/owner -run '^$' -bench ServiceLoad -benchmem
func BenchmarkServiceLoad(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "events.db")
	// Populate without fsync (setup only), then reopen as the agent does.
	fill, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	clk := domainstest.NewFixedClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	var wg sync.WaitGroup
	errs := make(chan error, loadCallers)
	for w := range loadCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < loadDomains; i += loadCallers {
				cfg := loadConfig(i, 64)
				ev := domains.NewEvent(cfg.UUID, clk.Now(), "", "bench", domains.Defined{Config: cfg})
				if _, err := fill.Append(ctx, store.AppendRequest{Domain: cfg.UUID, Events: []domains.Event{ev}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if err := fill.Close(); err != nil {
		b.Fatal(err)
	}
	counter := &commitCounter{}
	st, err := store.Open(path, store.Options{Observer: counter})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	proj, err := store.LoadProjection(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	ref := proj.Clone() // 10,000 shut-off domains, the service's own is proj
	log := &readCounter{EventLog: st.EventLog()}
	svc := owner.NewService(owner.Options{Log: log, Driver: domainstest.NewFakeDriver(), Time: clk, Host: "bench", Projection: proj})
	b.Cleanup(svc.Close)
	for i := range loadActive {
		if _, err := svc.Start(ctx, "", loadName(i*(loadDomains/loadActive)), domains.StartOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	h := api.Handler{Svc: svc}
	call := func(verb string, body []byte) error {
		res, err := h.Handle(ctx, verb, body)
		if err != nil {
			return err
		}
		_, err = json.Marshal(res) // the bus's reply encoding
		return err
	}
	var next atomic.Int64
	pick := func() int { return int(next.Add(7919) % loadDomains) } // a stride that visits every domain
	domainBody := func() []byte { return []byte(`{"domain":"` + loadName(pick()) + `"}`) }
	b.Run("info", func(b *testing.B) {
		parallel(b, func() error { return call(api.VerbInfo, domainBody()) })
	})
	b.Run("config", func(b *testing.B) {
		parallel(b, func() error { return call(api.VerbConfig, domainBody()) })
	})
	// list-running-copying is the reference: the list as it was, through
	// List (a copy of every domain's config), then filtered.
	for _, lc := range []struct {
		name string
		h    api.Handler
	}{{"list-running", h}, {"list-running-copying", api.Handler{Svc: listOnly{svc}}}} {
		b.Run(lc.name, func(b *testing.B) {
			parallel(b, func() error {
				res, err := lc.h.Handle(ctx, api.VerbList, []byte(`{"state":"running"}`))
				if err != nil {
					return err
				}
				if n := len(res.(api.ListReply).Domains); n != loadActive {
					return fmt.Errorf("list running: %d domains, want %d", n, loadActive)
				}
				_, err = json.Marshal(res)
				return err
			})
		})
	}
	// The agent's projection snapshot (every 10,000 events), under the
	// projection's read lock: a fold waiting for it holds up every read.
	// What the lock covers: the copy now (snapshot-locked-copy), the
	// serialisation before (snapshot-locked-marshal), on a private copy.
	for _, sc := range []struct {
		name string
		op   func() error
	}{
		{"snapshot", func() error { _, _, err := svc.Snapshot(); return err }},
		{"snapshot-locked-copy", func() error { ref.Clone(); return nil }},
		{"snapshot-locked-marshal", func() error { _, err := ref.MarshalSnapshot(); return err }},
	} {
		b.Run(sc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				if err := sc.op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
	// A define that updates a config (as the load's: config, then define
	// with one field changed), each a commit with its fsync; different
	// callers define different names, so their appends can share one.
	b.Run("define-update", func(b *testing.B) {
		c0, a0, r0 := counter.commits.Load(), counter.appends.Load(), log.reads.Load()
		var mem atomic.Int64
		start := time.Now()
		parallel(b, func() error {
			d, err := svc.Get(loadName(pick()))
			if err != nil {
				return err
			}
			cfg := d.Config
			cfg.MemoryMiB = 64 + uint64(mem.Add(1)%64)
			// With a command ID, as the agent's clients send (the load
			// benchmark's): the command table is read and written too.
			body, err := json.Marshal(api.DefineRequest{CommandID: uuid.NewString(), Config: cfg})
			if err != nil {
				return err
			}
			return call(api.VerbDefine, body)
		})
		elapsed := time.Since(start)
		commits, appends := counter.commits.Load()-c0, counter.appends.Load()-a0
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "defines/s")
		b.ReportMetric(float64(log.reads.Load()-r0)/float64(b.N), "log-reads/op")
		if commits > 0 {
			b.ReportMetric(float64(appends)/float64(commits), "appends/fsync")
		}
	})
}

// cpuTime is the process's user and system CPU so far: on a shared
// machine CPU per operation is the figure that holds, not wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs op at loadCallers goroutines and reports CPU per op.
func parallel(b *testing.B, op func() error) {
	b.ReportAllocs()
	b.SetParallelism(max(1, loadCallers/runtime.GOMAXPROCS(0)))
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// listOnly hides the service's Rows: list goes through List.
type listOnly struct{ api.Service }

func loadName(i int) string { return fmt.Sprintf("load-%05d", i) }

// loadConfig is a small config of the shape the agent's load benchmark
// defines (cmd/vmledger/load_bench_test.go): one disk.
func loadConfig(i int, memMiB uint64) domains.Config {
	cfg := domains.Config{
		Name: loadName(i), UUID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(loadName(i))), MemoryMiB: memMiB, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC},
		Disks: []domains.Disk{{Target: "hda", Path: "/var/lib/vmledger/disks/" + loadName(i) + ".img", Format: "raw", Bus: "ide"}},
	}
	return cfg.Normalize()
}
