package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// Sizes of BenchmarkAgentLoad (issue 14 f; docs/performance.md, "Load").
var (
	loadGuests   = flag.Int("load.guests", 100, "BenchmarkAgentLoad: tiny guests running")
	loadDomains  = flag.Int("load.domains", 10000, "BenchmarkAgentLoad: domains defined (the guests among them)")
	loadRate     = flag.Int("load.rate", 1000, "BenchmarkAgentLoad: commands per second")
	loadDuration = flag.Duration("load.duration", time.Minute, "BenchmarkAgentLoad: how long the commands run")
)

// BenchmarkAgentLoad: one agent with -load.domains domains defined and
// -load.guests tiny guests running takes -load.rate commands a second,
// open loop (latency from when a command was due, so a slow agent is not
// excused by fewer requests), for -load.duration, a mix of info, config,
// define (a config update), suspend and resume, list of the running and a
// history page, while every guest changes its RTC once a second (QMP
// RTC_CHANGE, folded into rtc-changed events). It reports p50 and p99 per
// verb, the agent's CPU and memory, the QMP events handled per second and
// the acknowledged sequences missing from the log (must be 0); then the
// agent is restarted and the time to ready, with every guest to
// reattach, is measured. Run with -benchtime 1x.
func BenchmarkAgentLoad(b *testing.B) {
	requireQEMU(b)
	accel := "tcg"
	if kvmUsable() {
		accel = "kvm"
	}
	state, run := b.TempDir(), shortRunDir(b)
	a := guestAgentIn(b, state, run, accel)
	nc, err := nats.Connect(a.natsURL, nats.MaxReconnects(-1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	c := bus.NewClient(nc, a.host)
	l := newLedger()
	fc := &faultClient{c: c, nc: nc, host: a.host, l: l}
	ctx := context.Background()

	t0 := time.Now()
	guests := loadDefineGuests(b, fc, *loadGuests)
	names := loadDefineMany(b, fc, *loadDomains-len(guests))
	b.Logf("defined %d domains in %v", len(names)+len(guests), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	booted := loadWatchBoots(b, nc, a.host)
	started := loadStartGuests(ctx, fc, guests)
	b.Logf("started %d of %d guests (%s) in %v; %s", len(started), len(guests), accel, time.Since(t0).Round(time.Millisecond), loadQEMUMemory(b, run))
	if len(started) == 0 {
		b.Fatal("no guest started")
	}
	// A guest reads its console once booted (SeaBIOS takes seconds on a
	// loaded machine): RTC commands sent before are lost.
	for deadline := time.Now().Add(3 * time.Minute); booted() < len(started); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d guests printed their clock within 3 min", booted(), len(started))
		}
	}
	b.Logf("all %d guests booted %v after the first start", len(started), time.Since(t0).Round(time.Millisecond))

	// QMP events handled: rtc-changed events committed while loaded.
	var rtcEvents atomic.Int64
	sub, err := nc.Subscribe(bus.EventFilter(a.host, uuid.Nil, domains.TypeRTCChanged), func(*nats.Msg) { rtcEvents.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes at cleanup
	cpu0, wall0 := procCPU(b, a.cmd.Process.Pid), time.Now()
	b.ResetTimer()
	lat := loadRun(ctx, fc, names, started, *loadRate, *loadDuration)
	b.StopTimer()
	cpu, wall := procCPU(b, a.cmd.Process.Pid)-cpu0, time.Since(wall0)
	rss, hwm := procMem(a.cmd.Process.Pid)
	rtc := float64(rtcEvents.Load()) / wall.Seconds()

	var rows []string
	total := 0
	for _, v := range slices.Sorted(maps.Keys(lat)) {
		d := lat[v]
		slices.Sort(d.ok)
		total += len(d.ok)
		rows = append(rows, fmt.Sprintf("%-10s %6d ok %4d err  p50 %8v  p99 %8v", v, len(d.ok), d.errs, pct(d.ok, 50), pct(d.ok, 99)))
		b.ReportMetric(float64(pct(d.ok, 99).Microseconds()), v+"-p99-µs")
	}
	evs, err := history(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	bySeq := make(map[uint64]domains.Event, len(evs))
	for _, e := range evs {
		bySeq[e.Seq] = e
	}
	why, lost := l.agrees(bySeq)
	b.Logf("load: %d commands in %v (%.0f/s asked, %.0f/s done); agent CPU %.0f%% of one core, RSS %d MiB (peak %d MiB); %.1f rtc-changed/s from %d guests; log %d events; lost %d\n%s\nuptime: %s",
		total, wall.Round(time.Millisecond), float64(*loadRate), float64(total)/wall.Seconds(), 100*cpu.Seconds()/wall.Seconds(), rss>>20, hwm>>20, rtc, len(started), len(evs), lost,
		strings.Join(rows, "\n"), loadUptime())
	b.ReportMetric(rtc, "rtc-events/s")
	b.ReportMetric(float64(hwm>>20), "agent-peak-MiB")
	b.ReportMetric(float64(lost), "lost")
	if why != "" {
		b.Fatalf("ledger: %s", why)
	}

	// Restart: the time from exec to "agent ready", which comes after
	// every running guest has been reattached.
	a.stop()
	t0 = time.Now()
	a = guestAgentIn(b, state, run, accel)
	ready := time.Since(t0)
	// The embedded server went with the old agent.
	nc.Close()
	if nc, err = nats.Connect(a.natsURL); err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	c = bus.NewClient(nc, a.host)
	var lr api.ListReply
	if err := c.Call(ctx, api.VerbList, api.ListRequest{State: string(domains.StateRunning)}, &lr); err != nil {
		b.Fatal(err)
	}
	paused := 0
	var lp api.ListReply
	if err := c.Call(ctx, api.VerbList, api.ListRequest{State: string(domains.StatePaused)}, &lp); err == nil {
		paused = len(lp.Domains)
	}
	b.Logf("restart with %d domains and %d guests: ready in %v; %d running + %d paused after, %d QEMUs of the run directory",
		len(names)+len(guests), len(started), ready.Round(time.Millisecond), len(lr.Domains), paused, len(qemusOf(b, run)))
	b.ReportMetric(ready.Seconds(), "restart-ready-s")
	if len(lr.Domains)+paused != len(started) {
		b.Fatalf("after the restart %d guests are active, %d were started", len(lr.Domains)+paused, len(started))
	}
}

// loadWatchBoots counts the guests whose console printed a clock line.
func loadWatchBoots(b *testing.B, nc *nats.Conn, host string) func() int {
	var mu sync.Mutex
	seen := map[string]bool{}
	sub, err := nc.Subscribe("vmledger.console."+host+".*.out", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), "RTC ") {
			mu.Lock()
			seen[m.Subject] = true
			mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

type loadLat struct {
	ok   []time.Duration
	errs int
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond)
}

func loadDefineGuests(b *testing.B, fc *faultClient, n int) []guestRef {
	dir := b.TempDir()
	var out []guestRef
	for i := range n {
		// One image each: QEMU locks a writable image against a second user.
		img := filepath.Join(dir, fmt.Sprintf("tiny%d.img", i))
		if err := guest.WriteImage(img); err != nil {
			b.Fatal(err)
		}
		cfg := domains.Config{Name: fmt.Sprintf("lg%03d", i), UUID: uuid.New(), MemoryMiB: 16, VCPUs: 1,
			Clock: domains.Clock{Offset: domains.OffsetVariable, Basis: domains.OffsetUTC},
			Disks: []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide"}}}
		if err := fc.define(context.Background(), cfg); err != nil {
			b.Fatalf("define %s: %v", cfg.Name, err)
		}
		out = append(out, guestRef{name: cfg.Name, id: cfg.UUID})
	}
	return out
}

// loadDefineMany defines n domains that never run, 32 at a time.
func loadDefineMany(b *testing.B, fc *faultClient, n int) []string {
	names := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				names[i] = fmt.Sprintf("ld%05d", i)
				cfg := domains.Config{Name: names[i], UUID: uuid.New(), MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: "utc"}}
				if fc.define(context.Background(), cfg) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d defines failed", f)
	}
	return names
}

// loadStartGuests starts the guests 4 at a time and returns those that
// run; a machine too small for all is reported, not failed.
func loadStartGuests(ctx context.Context, fc *faultClient, gs []guestRef) []guestRef {
	var mu sync.Mutex
	var out []guestRef
	ch := make(chan guestRef)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range ch {
				if fc.domainCmd(ctx, api.VerbStart, g.name) == nil {
					mu.Lock()
					out = append(out, g)
					mu.Unlock()
				}
			}
		}()
	}
	for _, g := range gs {
		ch <- g
	}
	close(ch)
	wg.Wait()
	return out
}

// loadRun sends rate commands a second for d, each due at its slot, on
// 256 workers, and every second has each guest set its RTC.
func loadRun(ctx context.Context, fc *faultClient, names []string, guests []guestRef, rate int, d time.Duration) map[string]*loadLat {
	type job struct {
		due time.Time
		n   int
	}
	jobs := make(chan job, rate*10)
	var mu sync.Mutex
	lat := map[string]*loadLat{}
	note := func(verb string, due time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		l := lat[verb]
		if l == nil {
			l = &loadLat{}
			lat[verb] = l
		}
		if err != nil {
			l.errs++
			return
		}
		l.ok = append(l.ok, time.Since(due))
	}
	busy := make([]atomic.Bool, len(guests))
	paused := make([]bool, len(guests)) // guarded by busy[i]
	var wg sync.WaitGroup
	for w := range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for j := range jobs {
				verb, err := loadOne(ctx, fc, rng, names, guests, busy, paused)
				note(verb, j.due, err)
			}
		}()
	}
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			at := time.Date(2030, 1, 1, 0, 0, i%60, 0, time.UTC)
			for _, g := range guests {
				_ = fc.nc.Publish(agent.ConsoleSubject(fc.host, g.id, "in"), []byte(guestTimeCmd(at)+"\r"))
			}
		}
	}()
	t0 := time.Now()
	n := int(d.Seconds() * float64(rate))
	for i := range n {
		due := t0.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(due))
		jobs <- job{due: due, n: i}
	}
	close(jobs)
	wg.Wait()
	close(stop)
	return lat
}

// loadOne sends one command of the mix and says which verb it was.
func loadOne(ctx context.Context, fc *faultClient, rng *rand.Rand, names []string, guests []guestRef, busy []atomic.Bool, paused []bool) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := rng.IntN(100)
	switch {
	case p < 15 && len(guests) > 0:
		i := rng.IntN(len(guests))
		if busy[i].CompareAndSwap(false, true) {
			defer busy[i].Store(false)
			verb := api.VerbSuspend
			if paused[i] {
				verb = api.VerbResume
			}
			err := fc.domainCmd(cctx, verb, guests[i].name)
			if err == nil {
				paused[i] = !paused[i]
			}
			return verb, err
		}
		fallthrough
	case p < 50:
		var d domains.Domain
		return api.VerbInfo, fc.c.Call(cctx, api.VerbInfo, api.DomainRequest{Domain: names[rng.IntN(len(names))]}, &d)
	case p < 60:
		var cfg domains.Config
		return api.VerbConfig, fc.c.Call(cctx, api.VerbConfig, api.DomainRequest{Domain: names[rng.IntN(len(names))]}, &cfg)
	case p < 85:
		var cfg domains.Config
		name := names[rng.IntN(len(names))]
		if err := fc.c.Call(cctx, api.VerbConfig, api.DomainRequest{Domain: name}, &cfg); err != nil {
			return api.VerbDefine, err
		}
		cfg.MemoryMiB = 64 * (1 + (cfg.MemoryMiB/64+rng.Uint64N(15))%16) // never the same: that is a conflict
		return api.VerbDefine, fc.define(cctx, cfg)
	case p < 95:
		_, err := fc.c.History(cctx, bus.HistoryRequest{After: rng.Uint64N(uint64(len(names))), Limit: 100})
		return "history", err
	default:
		var lr api.ListReply
		return api.VerbList + "-running", fc.c.Call(cctx, api.VerbList, api.ListRequest{State: string(domains.StateRunning)}, &lr)
	}
}

// procCPU is a process's user+system CPU time.
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procMem is a process's resident set and its peak, in bytes.
func procMem(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// loadQEMUMemory sums the resident sets of the run directory's QEMUs.
func loadQEMUMemory(t testing.TB, run string) string {
	var sum int64
	pids := qemusOf(t, run)
	for _, pid := range pids {
		rss, _ := procMem(pid)
		sum += rss
	}
	return fmt.Sprintf("%d QEMUs, %d MiB resident in all", len(pids), sum>>20)
}

func loadUptime() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
