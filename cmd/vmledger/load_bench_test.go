package main

import (
	"context"
	"encoding/json"
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
	loadAccel    = flag.String("load.accel", "tcg", "BenchmarkAgentLoad: the guests' accelerator, tcg, kvm or auto; "+
		"tcg by default: an idle tiny guest wakes 18.2 times a second (the BIOS timer) and under nested KVM each wake costs "+
		"exits to the outer hypervisor (10 idle guests: 2.0 cores under nested KVM, 0.11 under TCG, measured 2026-12-02)")
	loadStarts     = flag.Int("load.starts", 4, "BenchmarkAgentLoad: guest starts in flight at once")
	loadWorkers    = flag.Int("load.workers", 256, "BenchmarkAgentLoad: commands in flight at most (open loop: beyond 2 s of backlog a command is not sent, and counted)")
	loadAgentBin   = flag.String("load.agent", "", "BenchmarkAgentLoad: run this vmledger binary as the agent (a reference build, e.g. of an older commit) instead of this package's")
	loadCPUProfile = flag.String("load.cpuprofile", "", "BenchmarkAgentLoad: the agent writes a CPU profile of its run to this file (agent --cpuprofile)")
)

// BenchmarkAgentLoad: one agent with -load.domains domains defined and
// -load.guests tiny guests running takes -load.rate commands a second,
// open loop (latency from when a command was due, so a slow agent is not
// excused by fewer requests), for -load.duration, a mix of info, config,
// define (a config update), suspend and resume, list of the running and a
// history page, while every guest changes its RTC once a second (QMP
// RTC_CHANGE, folded into rtc-changed events). It reports p50 and p99 per
// verb, the agent's CPU and memory, the generator's own CPU (this test
// process), the QMP events handled per second and the acknowledged
// sequences missing from the log (must be 0); then the agent is
// restarted and the time to ready, with every guest to reattach, is
// measured. Run with -benchtime 1x.
func BenchmarkAgentLoad(b *testing.B) {
	requireQEMU(b)
	accel := loadAccelOf(b, *loadAccel)
	state, run := b.TempDir(), shortRunDir(b)
	var extra []string
	if *loadCPUProfile != "" {
		extra = append(extra, "--cpuprofile", *loadCPUProfile)
	}
	b.Logf("uptime at start: %s", loadUptime())
	a := loadAgent(b, state, run, accel, extra)
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
	started := loadBoot(ctx, b, fc, a, run, accel, guests)

	// QMP events handled: rtc-changed events committed while loaded.
	var rtcEvents atomic.Int64
	sub, err := nc.Subscribe(bus.EventFilter(a.host, uuid.Nil, domains.TypeRTCChanged), func(*nats.Msg) { rtcEvents.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes at cleanup
	qemus := qemusOf(b, run)
	cpu0, gen0, qcpu0, wall0 := procCPU(b, a.cmd.Process.Pid), procCPU(b, os.Getpid()), loadCPUOf(qemus), time.Now()
	b.ResetTimer()
	lat, dropped, lag := loadRun(ctx, fc, names, started, *loadRate, *loadDuration)
	b.StopTimer()
	wall := time.Since(wall0)
	cpu, gen, qcpu := procCPU(b, a.cmd.Process.Pid)-cpu0, procCPU(b, os.Getpid())-gen0, loadCPUOf(qemus)-qcpu0
	rss, hwm := procMem(a.cmd.Process.Pid)
	rtc := float64(rtcEvents.Load()) / wall.Seconds()
	upLoad := loadUptime()

	var rows []string
	total, errs := 0, 0
	for _, v := range slices.Sorted(maps.Keys(lat)) {
		d := lat[v]
		slices.Sort(d.ok)
		slices.Sort(d.sent)
		total += len(d.ok)
		errs += d.errs
		rows = append(rows, fmt.Sprintf("  %-13s %6d ok %5d err  p50 %9v  p99 %9v  (from sent: p50 %9v  p99 %9v)", v, len(d.ok), d.errs,
			pct(d.ok, 50), pct(d.ok, 99), pct(d.sent, 50), pct(d.sent, 99)))
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
	pctCore := func(d time.Duration) float64 { return 100 * d.Seconds() / wall.Seconds() }
	b.Logf("load (%s, %d guests, %d domains): %d commands answered in %v (%.0f/s asked, %.0f/s answered), %d errors, %d not sent (backlog over 2 s)\n%s\n"+
		"  agent CPU %.0f%% of one core (%.0f µs per command answered), RSS %d MiB (peak %d MiB)\n"+
		"  generator (test process) CPU %.0f%% of one core, sending late by p99 %v, max %v; guests' QEMUs %.0f%% in all (%d QEMUs)\n"+
		"  QMP events: %.1f rtc-changed/s from %d guests (1/s asked of each)\n  log %d events; lost %d\n  uptime after: %s",
		accel, len(started), len(names)+len(guests), total, wall.Round(time.Millisecond), float64(*loadRate), float64(total)/wall.Seconds(), errs, dropped, strings.Join(rows, "\n"),
		pctCore(cpu), float64(cpu.Microseconds())/float64(max(total, 1)), rss>>20, hwm>>20,
		pctCore(gen), pct(lag, 99), pct(lag, 100), pctCore(qcpu), len(qemus), rtc, len(started), len(evs), lost, upLoad)
	for _, v := range slices.Sorted(maps.Keys(lat)) {
		b.ReportMetric(float64(pct(lat[v].ok, 50).Microseconds()), v+"-p50-µs")
		b.ReportMetric(float64(pct(lat[v].ok, 99).Microseconds()), v+"-p99-µs")
	}
	b.ReportMetric(float64(total)/wall.Seconds(), "answered/s")
	b.ReportMetric(float64(dropped), "not-sent")
	b.ReportMetric(pctCore(cpu), "agent-cpu-%")
	b.ReportMetric(pctCore(gen), "generator-cpu-%")
	b.ReportMetric(rtc, "rtc-events/s")
	b.ReportMetric(float64(hwm>>20), "agent-peak-MiB")
	b.ReportMetric(float64(lost), "lost")
	if why != "" {
		b.Fatalf("ledger: %s", why)
	}
	loadRestart(ctx, b, a, nc, state, run, accel, len(names)+len(guests), started, extra)
}

// loadAccelOf resolves -load.accel; kvm asked where /dev/kvm does not
// open is a failure, not a silent TCG run.
func loadAccelOf(b *testing.B, accel string) string {
	switch accel {
	case "tcg":
	case "kvm":
		if !kvmUsable() {
			b.Fatal("-load.accel=kvm: /dev/kvm does not open")
		}
	case "auto":
		if accel = "tcg"; kvmUsable() {
			accel = "kvm"
		}
	default:
		b.Fatalf("-load.accel=%q: want tcg, kvm or auto", accel)
	}
	return accel
}

// loadBoot starts the guests, -load.starts at a time, and waits until
// each that started has booted (printed its clock), with a deadline that
// grows with their number; it returns those that run.
func loadBoot(ctx context.Context, b *testing.B, fc *faultClient, a *agentProc, run, accel string, guests []guestRef) []guestRef {
	t0 := time.Now()
	booted := loadWatchBoots(b, fc.nc, a.host)
	started, failed := loadStartGuests(ctx, fc, guests, *loadStarts)
	b.Logf("started %d of %d guests (%s, %d at a time) in %v; %s", len(started), len(guests), accel, *loadStarts,
		time.Since(t0).Round(time.Millisecond), loadQEMUMemory(b, run))
	if len(failed) > 0 {
		b.Logf("%d starts failed, the first: %v", len(failed), failed[0])
		// A start whose reply timed out may still have started the guest:
		// the agent's list says which run.
		started = loadActive(ctx, b, fc.c, guests)
		b.Logf("%d of the guests are active after all", len(started))
	}
	if len(started) == 0 {
		b.Fatal("no guest started")
	}
	// A guest reads its console once booted (SeaBIOS takes seconds on a
	// loaded machine): RTC commands sent before are lost.
	wait := time.Minute + time.Duration(len(started))*2*time.Second
	for deadline := time.Now().Add(wait); booted() < len(started); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d guests printed their clock within %v", booted(), len(started), wait)
		}
	}
	b.Logf("all %d guests booted %v after the first start", len(started), time.Since(t0).Round(time.Millisecond))
	return started
}

// loadActive is those of gs that are running or paused.
func loadActive(ctx context.Context, b *testing.B, c *bus.Client, gs []guestRef) []guestRef {
	active := map[string]bool{}
	for _, st := range []domains.State{domains.StateRunning, domains.StatePaused} {
		var lr api.ListReply
		if err := c.Call(ctx, api.VerbList, api.ListRequest{State: string(st)}, &lr); err != nil {
			b.Fatal(err)
		}
		for _, d := range lr.Domains {
			active[d.Name] = true
		}
	}
	var out []guestRef
	for _, g := range gs {
		if active[g.name] {
			out = append(out, g)
		}
	}
	return out
}

// loadRestart stops the agent (SIGTERM) and times a new one from exec to
// "agent ready", which comes after every running guest is reattached;
// every guest must be active after, on the same QEMU process.
func loadRestart(ctx context.Context, b *testing.B, a *agentProc, nc *nats.Conn, state, run, accel string, domainsN int, started []guestRef, extra []string) {
	before := qemusOf(b, run)
	a.stop()
	if *loadCPUProfile != "" {
		// The second agent must not overwrite the load run's profile.
		extra = []string{"--cpuprofile", *loadCPUProfile + ".restart"}
	}
	t0 := time.Now()
	a = loadAgent(b, state, run, accel, extra)
	ready := time.Since(t0)
	// The embedded server went with the old agent.
	nc.Close()
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	active := len(loadActive(ctx, b, bus.NewClient(nc, a.host), started))
	after := qemusOf(b, run)
	b.Logf("restart with %d domains and %d guests: ready in %v; %d active after; QEMUs of the run directory %d before, %d after, the same processes: %v",
		domainsN, len(started), ready.Round(time.Millisecond), active, len(before), len(after), slices.Equal(slices.Sorted(slices.Values(before)), slices.Sorted(slices.Values(after))))
	b.ReportMetric(ready.Seconds(), "restart-ready-s")
	if active != len(started) {
		b.Fatalf("after the restart %d guests are active, %d were started", active, len(started))
	}
	if !slices.Equal(slices.Sorted(slices.Values(before)), slices.Sorted(slices.Values(after))) {
		b.Fatalf("QEMUs before the restart %v, after %v: a guest was lost or restarted", before, after)
	}
}

// loadAgent is guestAgentIn with agent flags (guestAgentIn's variadic
// is the environment).
func loadAgent(b *testing.B, state, run, accel string, extra []string) *agentProc {
	args := append([]string{"--accel", accel, "--run-dir", run}, extra...)
	var a *agentProc
	if *loadAgentBin != "" {
		a = startAgentBin(b, *loadAgentBin, state, nil, append(args, allowArgs(b, state, args)...)...)
	} else {
		a = startAgentEnv(b, state, nil, args...)
	}
	a.runDir = run
	return a
}

// loadCPUOf sums the CPU time of processes (those gone count 0).
func loadCPUOf(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		if d, err := procCPUErr(pid); err == nil {
			sum += d
		}
	}
	return sum
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

// loadLat: per verb, the latencies of the commands answered from when
// each was due (ok: open loop, the figure) and from when a worker sent it
// (sent: the time in the agent and on the bus, without the generator's
// queue), and the errors.
type loadLat struct {
	ok, sent []time.Duration
	errs     int
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond) // p 100: the largest
}

func loadDefineGuests(b *testing.B, fc *faultClient, n int) []guestRef {
	dir := diskDir(b) // inside the agent's --allow-dir
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

// loadStartGuests starts the guests n at a time and returns those that
// run and the errors of those that did not; a machine too small for all
// is reported, not failed.
func loadStartGuests(ctx context.Context, fc *faultClient, gs []guestRef, n int) ([]guestRef, []error) {
	var mu sync.Mutex
	var out []guestRef
	var failed []error
	ch := make(chan guestRef)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() {
			for g := range ch {
				err := fc.domainCmd(ctx, api.VerbStart, g.name)
				mu.Lock()
				if err == nil {
					out = append(out, g)
				} else {
					failed = append(failed, fmt.Errorf("start %s: %w", g.name, err))
				}
				mu.Unlock()
			}
		})
	}
	for _, g := range gs {
		ch <- g
	}
	close(ch)
	wg.Wait()
	return out, failed
}

// loadRun sends rate commands a second for d, each due at its slot, on
// -load.workers workers, and every second has each guest set its RTC. It
// returns the latencies per verb, the commands not sent because 2 s of
// them were queued already, and how late each command was handed to the
// workers (sorted): the generator's own lag, which must stay small for
// the latencies to be the agent's.
func loadRun(ctx context.Context, fc *faultClient, names []string, guests []guestRef, rate int, d time.Duration) (map[string]*loadLat, int, []time.Duration) {
	type job struct {
		due time.Time
		n   int
	}
	jobs := make(chan job, rate*2)
	var mu sync.Mutex
	lat := map[string]*loadLat{}
	note := func(verb string, due, sent time.Time, err error) {
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
		l.sent = append(l.sent, time.Since(sent))
	}
	busy := make([]atomic.Bool, len(guests))
	paused := make([]bool, len(guests)) // guarded by busy[i]
	var wg sync.WaitGroup
	for w := range *loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for j := range jobs {
				sent := time.Now()
				verb, err := loadOne(ctx, fc, rng, names, guests, busy, paused)
				note(verb, j.due, sent, err)
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
	dropped := 0
	lags := make([]time.Duration, 0, n)
	for i := range n {
		due := t0.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(due))
		lags = append(lags, time.Since(due))
		select {
		case jobs <- job{due: due, n: i}:
		default:
			dropped++ // 2 s of commands queued already: the agent is saturated
		}
	}
	close(jobs)
	wg.Wait()
	close(stop)
	slices.Sort(lags)
	return lat, dropped, lags
}

// loadOne sends one command of the mix and says which verb it was.
func loadOne(ctx context.Context, fc *faultClient, rng *rand.Rand, names []string, guests []guestRef, busy []atomic.Bool, paused []bool) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
			} else {
				// A suspend that timed out may still have taken effect:
				// ask, or the next one is refused as a conflict.
				var d domains.Domain
				if fc.c.Call(ctx, api.VerbInfo, api.DomainRequest{Domain: guests[i].name}, &d) == nil {
					paused[i] = d.State == domains.StatePaused
				}
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
		return "history", loadHistoryPage(cctx, fc, rng.Uint64N(uint64(len(names))))
	default:
		var lr api.ListReply
		return api.VerbList + "-running", fc.c.Call(cctx, api.VerbList, api.ListRequest{State: string(domains.StateRunning)}, &lr)
	}
}

// loadHistoryPage asks for a page of 100 events after seq and checks the
// reply without decoding each event, as a consumer that forwards them
// would: bus.Client.History's strict decode of every event took half the
// generator's CPU (45 % of the test process at 250 commands a second),
// which on this 2-core machine is CPU the agent under test then lacks.
func loadHistoryPage(ctx context.Context, fc *faultClient, after uint64) error {
	m := nats.NewMsg(bus.HistorySubject(fc.host))
	m.Data, _ = json.Marshal(bus.HistoryRequest{After: after, Limit: 100})
	if dl, ok := ctx.Deadline(); ok {
		m.Header.Set(bus.HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	rm, err := fc.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return err
	}
	var r struct {
		Events []json.RawMessage `json:"events"`
		Error  *bus.WireError    `json:"error"`
	}
	switch err := json.Unmarshal(rm.Data, &r); {
	case err != nil:
		return fmt.Errorf("history after %d: %w", after, err)
	case r.Error != nil:
		return fmt.Errorf("history after %d: %s: %s", after, r.Error.Code, r.Error.Message)
	case len(r.Events) == 0:
		return fmt.Errorf("history after %d: no events (the log has more)", after)
	}
	return nil
}

// procCPU is a process's user+system CPU time.
func procCPU(t testing.TB, pid int) time.Duration {
	d, err := procCPUErr(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func procCPUErr(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ
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
