package owner_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// env is one service over fakes. Its cleanup closes every service it made
// and checks that replaying the log gives exactly the live projection.
type env struct {
	t   *testing.T
	ctx context.Context
	log *domainstest.MemLog
	drv *domainstest.FakeDriver
	clk *domainstest.FixedClock
	svc *owner.Service
}

var (
	clockUTC   = domains.Clock{Offset: domains.OffsetUTC}
	clockLocal = domains.Clock{Offset: domains.OffsetLocaltime}
)

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	e := &env{
		t: t, ctx: ctx,
		log: domainstest.NewMemLog(),
		drv: domainstest.NewFakeDriver(),
		clk: domainstest.NewFixedClock(time.Date(2024, 1, 15, 12, 0, 0, 0, domainstest.NewYork(t))),
	}
	e.svc = e.newService(e.drv, nil)
	return e
}

// newService makes a service over e.log (drv may be nil: no hypervisor).
func (e *env) newService(drv domains.Driver, proj *domains.Projection) *owner.Service {
	svc := owner.NewService(owner.Options{Log: e.log, Driver: drv, Time: e.clk, Host: "host-a", Projection: proj})
	e.t.Cleanup(func() {
		svc.Close()
		if svc == e.svc { // a replaced service was checked by restart
			e.checkReplay(svc)
		}
	})
	return svc
}

// restart is an agent restart: the old service lets go of its guests, a
// new one starts from the replayed log with driver drv.
func (e *env) restart(drv domains.Driver) {
	e.t.Helper()
	e.svc.Close()
	e.checkReplay(e.svc)
	p, err := e.log.Replay()
	if err != nil {
		e.t.Fatalf("replay: %v", err)
	}
	e.svc = e.newService(drv, p)
}

func (e *env) checkReplay(svc *owner.Service) {
	e.t.Helper()
	p, err := e.log.Replay()
	if err != nil {
		e.t.Errorf("replay: %v", err)
		return
	}
	if ok, diff := svc.Equal(p); !ok {
		e.t.Errorf("replay != live: %s", diff)
	}
	if svc.LastSeq() != e.log.LastSeq() {
		e.t.Errorf("live projection at seq %d, log at %d", svc.LastSeq(), e.log.LastSeq())
	}
}

func (e *env) define(name string, k domains.Clock) domains.Config {
	e.t.Helper()
	cfg := cfgNamed(name, uuid.New(), k)
	if _, err := e.svc.Define(e.ctx, "", cfg); err != nil {
		e.t.Fatalf("define %s: %v", name, err)
	}
	return cfg.Normalize()
}

func (e *env) start(cfg domains.Config) *domainstest.FakeGuest {
	e.t.Helper()
	if _, err := e.svc.Start(e.ctx, "", cfg.Name, domains.StartOptions{}); err != nil {
		e.t.Fatalf("start %s: %v", cfg.Name, err)
	}
	g := e.drv.Guest(cfg.UUID)
	if g == nil {
		e.t.Fatalf("start %s: the driver has no guest", cfg.Name)
	}
	return g
}

func (e *env) get(ref string) domains.Domain {
	e.t.Helper()
	d, err := e.svc.Get(ref)
	if err != nil {
		e.t.Fatalf("get %s: %v", ref, err)
	}
	return d
}

// eventsAfter returns the log's events with seq > after.
func (e *env) eventsAfter(after uint64) []domains.Event {
	e.t.Helper()
	evs, err := e.log.ReadAfter(e.ctx, after, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *env) lastEvent() domains.Event {
	e.t.Helper()
	evs := e.eventsAfter(e.log.LastSeq() - 1)
	if len(evs) != 1 {
		e.t.Fatalf("no last event")
	}
	return evs[0]
}

// waitSeq waits until the log has seq and the live projection folded it.
func (e *env) waitSeq(seq uint64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	if err := e.log.Wait(ctx, seq); err != nil {
		e.t.Fatalf("%v; events: %v", err, types(e.eventsAfter(0)))
	}
	for e.svc.LastSeq() < seq {
		select {
		case <-ctx.Done():
			e.t.Fatalf("projection stuck at %d, want %d", e.svc.LastSeq(), seq)
		case <-time.After(time.Millisecond):
		}
	}
}

func types(evs []domains.Event) []domains.Type {
	out := make([]domains.Type, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func payloads(evs []domains.Event) []domains.Payload {
	out := make([]domains.Payload, len(evs))
	for i, e := range evs {
		out[i] = e.Payload
	}
	return out
}

func wantCode(t *testing.T, err error, sentinel *domains.Error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", sentinel.Code)
	}
	if !errors.Is(err, sentinel) || domains.CodeOf(err) != sentinel.Code {
		t.Fatalf("error %q has code %s, want %s", err, domains.CodeOf(err), sentinel.Code)
	}
}

func TestServiceDefine(t *testing.T) {
	t.Run("new", func(t *testing.T) {
		e := newEnv(t)
		cfg := cfgNamed("web", uuidA, domains.Clock{})
		cfg.Machine = ""
		res, err := e.svc.Define(e.ctx, "c1", cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := domains.Result{Domain: uuidA, Name: "web", Seqs: []uint64{1}, State: domains.StateShutoff}
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("result %+v, want %+v", res, want)
		}
		ev := e.lastEvent()
		def, ok := ev.Payload.(domains.Defined)
		if !ok || ev.Version != 1 || ev.CommandID != "c1" || ev.Host != "host-a" || !ev.Time.Equal(e.clk.Now()) {
			t.Fatalf("event %+v", ev)
		}
		if !reflect.DeepEqual(def.Config, cfg.Normalize()) {
			t.Fatalf("recorded config %+v, want the normalized %+v", def.Config, cfg.Normalize())
		}
		if d := e.get("web"); d.Config.UUID != uuidA || d.State != domains.StateShutoff || d.Version != 1 {
			t.Fatalf("domain %+v", d)
		}
		if d := e.get(uuidA.String()); d.Config.Name != "web" {
			t.Fatalf("by uuid: %+v", d)
		}
		if l := e.svc.List(); len(l) != 1 || l[0].Config.Name != "web" {
			t.Fatalf("List = %+v", l)
		}
	})
	t.Run("nil uuid gets one", func(t *testing.T) {
		e := newEnv(t)
		res, err := e.svc.Define(e.ctx, "", cfgNamed("web", uuid.Nil, clockUTC))
		if err != nil || res.Domain == uuid.Nil {
			t.Fatalf("%+v %v", res, err)
		}
		if d := e.get("web"); d.Config.UUID != res.Domain {
			t.Fatalf("config uuid %s, result %s", d.Config.UUID, res.Domain)
		}
	})
	t.Run("same config again", func(t *testing.T) {
		e := newEnv(t)
		cfg := cfgNamed("web", uuidA, clockUTC)
		if _, err := e.svc.Define(e.ctx, "", cfg); err != nil {
			t.Fatal(err)
		}
		// Equal after normalization counts as the same: a no-op that
		// says so (virsh define of an unchanged file), no event.
		cfg.Machine, cfg.VCPUs = "", 0
		res, err := e.svc.Define(e.ctx, "again", cfg)
		if err != nil || !res.Unchanged || res.Updated || len(res.Seqs) != 0 || res.Domain != uuidA {
			t.Fatalf("define again: %+v %v, want unchanged", res, err)
		}
		if e.log.LastSeq() != 1 {
			t.Fatalf("log at %d", e.log.LastSeq())
		}
		// Recorded: a retry gets the same reply.
		if again, err := e.svc.Define(e.ctx, "again", cfg); err != nil || !again.Unchanged {
			t.Fatalf("retry: %+v %v", again, err)
		}
	})
	t.Run("changed config", func(t *testing.T) {
		e := newEnv(t)
		cfg := cfgNamed("web", uuidA, clockUTC)
		e.svc.Define(e.ctx, "", cfg)
		cfg.MemoryMiB = 1024
		res, err := e.svc.Define(e.ctx, "", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Seqs, []uint64{2}) || res.State != domains.StateShutoff || res.Name != "web" || !res.Updated {
			t.Fatalf("result %+v", res)
		}
		if ev := e.lastEvent(); ev.Type != domains.TypeConfigUpdated || ev.Version != 2 {
			t.Fatalf("event %+v", ev)
		}
		if d := e.get("web"); d.Config.MemoryMiB != 1024 || d.Version != 2 {
			t.Fatalf("domain %+v", d)
		}
	})
	t.Run("changed config while running", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.define("web", clockUTC)
		e.start(cfg)
		cfg.VCPUs = 2
		res, err := e.svc.Define(e.ctx, "", cfg)
		if err != nil || res.State != domains.StateRunning {
			t.Fatalf("%+v %v", res, err)
		}
		if d := e.get("web"); d.Config.VCPUs != 2 || d.State != domains.StateRunning || d.Live == nil {
			t.Fatalf("domain %+v", d)
		}
	})
	t.Run("duplicate name other uuid", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Define(e.ctx, "", cfgNamed("web", uuidA, clockUTC))
		_, err := e.svc.Define(e.ctx, "", cfgNamed("web", uuidB, clockUTC))
		wantCode(t, err, domains.ErrConflict)
		if e.log.LastSeq() != 1 {
			t.Fatalf("log at %d", e.log.LastSeq())
		}
	})
	t.Run("existing name without uuid updates it", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Define(e.ctx, "", cfgNamed("web", uuidA, clockUTC))
		c := cfgNamed("web", uuid.Nil, clockUTC)
		c.MemoryMiB *= 2
		res, err := e.svc.Define(e.ctx, "", c)
		if err != nil || res.Domain != uuidA || !res.Updated {
			t.Fatalf("define by name: %+v %v, want an update of %s", res, err, uuidA)
		}
		if ev := e.lastEvent(); ev.Type != domains.TypeConfigUpdated || ev.Domain != uuidA {
			t.Fatalf("event %+v", ev)
		}
	})
	t.Run("rename", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Define(e.ctx, "", cfgNamed("web", uuidA, clockUTC))
		_, err := e.svc.Define(e.ctx, "", cfgNamed("www", uuidA, clockUTC))
		wantCode(t, err, domains.ErrConflict)
		if e.log.LastSeq() != 1 || e.get("web").Config.Name != "web" {
			t.Fatal("rename changed something")
		}
		if _, err := e.svc.Get("www"); !errors.Is(err, domains.ErrNotFound) {
			t.Fatalf("Get(www) = %v", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Define(e.ctx, "", cfgNamed("web", uuidA, clockUTC))
		for name, mut := range map[string]func(*domains.Config){
			"zero memory":  func(c *domains.Config) { c.MemoryMiB = 0 },
			"bad name":     func(c *domains.Config) { c.Name = "a.b" },
			"bad clock":    func(c *domains.Config) { c.Clock.Offset = "sundial" },
			"update vcpus": func(c *domains.Config) { c.UUID, c.VCPUs = uuidA, domains.MaxVCPUs+1 },
			"relative dir": func(c *domains.Config) { c.Disks = []domains.Disk{{Target: "vda", Path: "x.img"}} },
		} {
			c := cfgNamed("other", uuidB, clockUTC)
			if strings.HasPrefix(name, "update") {
				c.Name = "web"
			}
			mut(&c)
			_, err := e.svc.Define(e.ctx, "inv-"+name, c)
			if !errors.Is(err, domains.ErrInvalid) {
				t.Errorf("%s: err = %v, want invalid", name, err)
			}
			if e.log.LastSeq() != 1 {
				t.Fatalf("%s: something was appended", name)
			}
			if _, found, _ := e.log.Command(e.ctx, "inv-"+name); found {
				t.Errorf("%s: a refused command was recorded", name)
			}
		}
	})
	t.Run("caller's config is not touched", func(t *testing.T) {
		e := newEnv(t)
		cfg := cfgNamed("web", uuidA, clockUTC)
		cfg.Disks = []domains.Disk{{Target: "vda", Path: "/x.img"}}
		if _, err := e.svc.Define(e.ctx, "", cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Disks[0].Format != "" {
			t.Fatalf("Define wrote %q into the caller's disk", cfg.Disks[0].Format)
		}
		cfg.Disks[0].Path = "/changed"
		if e.get("web").Config.Disks[0].Path != "/x.img" {
			t.Fatal("the projection shares the caller's slice")
		}
	})
	t.Run("redefine after undefine", func(t *testing.T) {
		e := newEnv(t)
		e.svc.Define(e.ctx, "", cfgNamed("web", uuidA, clockUTC))
		if _, err := e.svc.Undefine(e.ctx, "", "web"); err != nil {
			t.Fatal(err)
		}
		// The name is free for another UUID ...
		if _, err := e.svc.Define(e.ctx, "", cfgNamed("web", uuidB, clockUTC)); err != nil {
			t.Fatal(err)
		}
		// ... and the old UUID continues its versions under a new name.
		if _, err := e.svc.Define(e.ctx, "", cfgNamed("web-old", uuidA, clockUTC)); err != nil {
			t.Fatal(err)
		}
		if ev := e.lastEvent(); ev.Type != domains.TypeDefined || ev.Version != 3 || ev.Domain != uuidA {
			t.Fatalf("redefinition %+v", ev)
		}
		if d := e.get("web-old"); d.Version != 3 {
			t.Fatalf("version %d", d.Version)
		}
	})
}

func TestServiceUndefine(t *testing.T) {
	e := newEnv(t)
	run := e.define("run", clockUTC)
	e.start(run)
	pause := e.define("pause", clockUTC)
	e.start(pause)
	if _, err := e.svc.Suspend(e.ctx, "", "pause"); err != nil {
		t.Fatal(err)
	}
	off := e.define("off", clockUTC)
	before := e.log.LastSeq()
	for _, ref := range []string{"run", run.UUID.String(), "pause"} {
		_, err := e.svc.Undefine(e.ctx, "", ref)
		wantCode(t, err, domains.ErrConflict)
	}
	_, err := e.svc.Undefine(e.ctx, "", "nope")
	wantCode(t, err, domains.ErrNotFound)
	if e.log.LastSeq() != before {
		t.Fatal("refused undefines appended events")
	}
	res, err := e.svc.Undefine(e.ctx, "u1", "off")
	if err != nil {
		t.Fatal(err)
	}
	if res.Domain != off.UUID || res.Name != "off" || len(res.Seqs) != 1 || res.State != domains.StateShutoff {
		t.Fatalf("result %+v", res)
	}
	if _, err := e.svc.Get("off"); !errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("Get after undefine: %v", err)
	}
	_, err = e.svc.Undefine(e.ctx, "", "off")
	wantCode(t, err, domains.ErrNotFound)
}

func TestServiceStartRecordsClockBase(t *testing.T) {
	ny := domainstest.NewYork(t)
	winter := time.Date(2024, 1, 15, 12, 0, 0, 0, ny)
	summer := time.Date(2024, 7, 15, 12, 0, 0, 0, ny)
	cases := []struct {
		name  string
		clock domains.Clock
		now   time.Time
		want  int64
	}{
		{"utc", clockUTC, winter, 0},
		{"localtime winter", clockLocal, winter, -18000},
		{"localtime summer", clockLocal, summer, -14400},
		{"variable utc", domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisUTC}, summer, 600},
		{"variable localtime winter", domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisLocaltime}, winter, 600 - 18000},
		{"variable localtime summer", domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisLocaltime}, summer, 600 - 14400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.clk.Set(c.now)
			cfg := e.define("vm", c.clock)
			if got := domains.ClockBase(cfg.Clock, c.now); got != c.want {
				t.Fatalf("ClockBase = %d, want %d", got, c.want)
			}
			res, err := e.svc.Start(e.ctx, "s1", "vm", domains.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.State != domains.StateRunning || !reflect.DeepEqual(res.Seqs, []uint64{2}) {
				t.Fatalf("result %+v", res)
			}
			specs := e.drv.Starts()
			if len(specs) != 1 || specs[0].ClockBase != c.want || specs[0].Paused || !reflect.DeepEqual(specs[0].Config, cfg) {
				t.Fatalf("driver got %+v", specs)
			}
			g := e.drv.Guest(cfg.UUID)
			want := domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: g.PID(), ClockBase: c.want}
			if ev := e.lastEvent(); !reflect.DeepEqual(ev.Payload, want) || ev.CommandID != "s1" {
				t.Fatalf("event %+v, want payload %+v", ev, want)
			}
			d := e.get("vm")
			wantLive := &domains.Live{Accel: "kvm", PID: g.PID(), ClockBase: c.want, RTC: c.want, Started: c.now.UTC()}
			if d.State != domains.StateRunning || d.Reason != domains.StartBooted || !reflect.DeepEqual(d.Live, wantLive) {
				t.Fatalf("domain %+v live %+v", d, d.Live)
			}
		})
	}
}

func TestServiceStart(t *testing.T) {
	t.Run("paused", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.define("vm", clockUTC)
		res, err := e.svc.Start(e.ctx, "", "vm", domains.StartOptions{Paused: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.State != domains.StatePaused || !reflect.DeepEqual(res.Seqs, []uint64{2, 3}) {
			t.Fatalf("result %+v", res)
		}
		if s := e.drv.Starts(); len(s) != 1 || !s[0].Paused {
			t.Fatalf("specs %+v", s)
		}
		if got := types(e.eventsAfter(1)); !reflect.DeepEqual(got, []domains.Type{domains.TypeStarted, domains.TypePaused}) {
			t.Fatalf("events %v", got)
		}
		if d := e.get(cfg.Name); d.State != domains.StatePaused || d.Reason != domains.PauseUser {
			t.Fatalf("domain %+v", d)
		}
		// It can be resumed.
		if _, err := e.svc.Resume(e.ctx, "", "vm"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("driver failure", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		cause := errors.New("qemu: could not open /dev/kvm")
		e.drv.FailStart(cause)
		_, err := e.svc.Start(e.ctx, "s1", "vm", domains.StartOptions{})
		wantCode(t, err, domains.ErrUnavailable)
		if !errors.Is(err, cause) {
			t.Errorf("error %q lost its cause", err)
		}
		if e.log.LastSeq() != 1 || e.get("vm").State != domains.StateShutoff {
			t.Fatal("a failed start left a trace")
		}
		// A failed command is not recorded: the retry acts.
		e.drv.FailStart(nil)
		if _, err := e.svc.Start(e.ctx, "s1", "vm", domains.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := len(e.drv.Starts()); n != 2 {
			t.Fatalf("driver Start called %d times", n)
		}
	})
	t.Run("append failure kills the guest", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.define("vm", clockUTC)
		e.log.FailAppends(errors.New("disk full"))
		_, err := e.svc.Start(e.ctx, "", "vm", domains.StartOptions{})
		if err == nil {
			t.Fatal("start succeeded without a record")
		}
		g := e.drv.Guest(cfg.UUID)
		if g == nil || g.CallCount("Kill") != 1 || !g.Exited() {
			t.Fatalf("guest not killed: %v", g.Calls())
		}
		e.log.FailAppends(nil)
		if e.log.LastSeq() != 1 || e.get("vm").State != domains.StateShutoff {
			t.Fatal("failed start left a trace")
		}
		// The dead guest is not watched: its exit records nothing, and a
		// new start works.
		e.start(cfg)
		if got := types(e.eventsAfter(1)); !reflect.DeepEqual(got, []domains.Type{domains.TypeStarted}) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("append version conflict", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.define("vm", clockUTC)
		// Someone else appended behind the service's back.
		if _, err := e.log.Append(e.ctx, domains.AppendRequest{Domain: cfg.UUID, ExpectedVersion: domains.AnyVersion,
			Events: []domains.Event{domains.NewEvent(cfg.UUID, e.clk.Now(), "", "x", domains.ConfigUpdated{Config: cfg})}}); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.Start(e.ctx, "", "vm", domains.StartOptions{})
		wantCode(t, err, domains.ErrConflict)
		if g := e.drv.Guest(cfg.UUID); g.CallCount("Kill") != 1 {
			t.Fatal("guest not killed after a refused append")
		}
		// The foreign event is in the log, so it must be in the live
		// projection too (the cleanup's replay check).
		if d := e.get("vm"); d.Version != 2 || d.State != domains.StateShutoff {
			t.Fatalf("domain %+v", d)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.svc.Start(e.ctx, "", "nope", domains.StartOptions{})
		wantCode(t, err, domains.ErrNotFound)
	})
	t.Run("no driver", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		e.svc.Close()
		e.svc = e.newService(nil, mustReplay(t, e.log))
		_, err := e.svc.Start(e.ctx, "", "vm", domains.StartOptions{})
		wantCode(t, err, domains.ErrUnavailable)
		if err := e.svc.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func mustReplay(t *testing.T, l *domainstest.MemLog) *domains.Projection {
	t.Helper()
	p, err := l.Replay()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServiceVerbs(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("vm", clockUTC)
	g := e.start(cfg)

	step := func(name string, do func() (domains.Result, error), method string, wantState domains.State, want ...domains.Payload) {
		t.Helper()
		before := e.log.LastSeq()
		calls := g.CallCount(method)
		res, err := do()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g.CallCount(method) != calls+1 {
			t.Fatalf("%s: guest.%s not called", name, method)
		}
		got := e.eventsAfter(before)
		if !reflect.DeepEqual(payloads(got), want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s: events %+v, want %+v", name, payloads(got), want)
		}
		if res.State != wantState || res.Domain != cfg.UUID || res.Name != "vm" || len(res.Seqs) != len(want) {
			t.Fatalf("%s: result %+v", name, res)
		}
		for i, ev := range got {
			if res.Seqs[i] != ev.Seq || ev.CommandID != name {
				t.Fatalf("%s: result seqs %v, event %+v", name, res.Seqs, ev)
			}
		}
		if d := e.get("vm"); d.State != wantState {
			t.Fatalf("%s: state %q, want %q", name, d.State, wantState)
		}
	}
	step("suspend", func() (domains.Result, error) { return e.svc.Suspend(e.ctx, "suspend", "vm") }, "Pause",
		domains.StatePaused, domains.Paused{Reason: domains.PauseUser})
	if st, _ := g.Status(e.ctx); st.Running {
		t.Fatal("guest still runs after suspend")
	}
	step("resume", func() (domains.Result, error) { return e.svc.Resume(e.ctx, "resume", "vm") }, "Resume",
		domains.StateRunning, domains.Resumed{Reason: "user"})
	step("reset", func() (domains.Result, error) { return e.svc.Reset(e.ctx, "reset", cfg.UUID.String()) }, "Reset",
		domains.StateRunning, domains.Reset{Guest: false, Reason: "host"})
	step("shutdown", func() (domains.Result, error) { return e.svc.Shutdown(e.ctx, "shutdown", "vm") }, "Powerdown",
		domains.StateRunning) // the guest decides; nothing is recorded yet
	step("destroy", func() (domains.Result, error) { return e.svc.Destroy(e.ctx, "destroy", "vm") }, "Kill",
		domains.StateShutoff, domains.Stopped{Reason: domains.StopDestroyed})
	if d := e.get("vm"); d.Live != nil || d.Reason != domains.StopDestroyed {
		t.Fatalf("after destroy: %+v", d)
	}
	// The watcher sees QEMU exit but must not record a second stop.
	last := e.log.LastSeq()
	e.svc.Close()
	if e.log.LastSeq() != last {
		t.Fatalf("extra events after destroy: %v", types(e.eventsAfter(last)))
	}
}

func TestServiceGuestMethodFails(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("vm", clockUTC)
	g := e.start(cfg)
	cause := errors.New("QMP: timeout")
	for _, m := range []string{"Pause", "Reset", "Powerdown", "Kill"} {
		g.Fail(m, cause)
	}
	before := e.log.LastSeq()
	for name, do := range map[string]func() (domains.Result, error){
		"suspend":  func() (domains.Result, error) { return e.svc.Suspend(e.ctx, "", "vm") },
		"reset":    func() (domains.Result, error) { return e.svc.Reset(e.ctx, "", "vm") },
		"shutdown": func() (domains.Result, error) { return e.svc.Shutdown(e.ctx, "", "vm") },
		"destroy":  func() (domains.Result, error) { return e.svc.Destroy(e.ctx, "", "vm") },
	} {
		_, err := do()
		wantCode(t, err, domains.ErrUnavailable)
		if !errors.Is(err, cause) {
			t.Errorf("%s: error %q lost its cause", name, err)
		}
	}
	if e.log.LastSeq() != before || e.get("vm").State != domains.StateRunning {
		t.Fatal("failed verbs left a trace")
	}
}

// TestServiceIllegal: each verb in each state where the table forbids it
// answers conflict, touches nothing and records nothing.
func TestServiceIllegal(t *testing.T) {
	type setup func(e *env, cfg domains.Config)
	shutoff := func(e *env, cfg domains.Config) {}
	running := func(e *env, cfg domains.Config) { e.start(cfg) }
	paused := func(e *env, cfg domains.Config) {
		e.start(cfg)
		if _, err := e.svc.Suspend(e.ctx, "", cfg.Name); err != nil {
			e.t.Fatal(err)
		}
	}
	hinted := func(kind domains.GuestEventKind) setup {
		return func(e *env, cfg domains.Config) {
			g := e.start(cfg)
			seq := e.log.LastSeq()
			g.Push(domains.GuestEvent{Kind: kind, Guest: true, Reason: "x"})
			e.waitSeq(seq + 1)
		}
	}
	inShutdown, crashed := hinted(domains.GuestShutdown), hinted(domains.GuestPanicked)
	verbs := map[string]func(e *env, ref string) (domains.Result, error){
		"start": func(e *env, ref string) (domains.Result, error) {
			return e.svc.Start(e.ctx, "", ref, domains.StartOptions{})
		},
		"suspend":  func(e *env, ref string) (domains.Result, error) { return e.svc.Suspend(e.ctx, "", ref) },
		"resume":   func(e *env, ref string) (domains.Result, error) { return e.svc.Resume(e.ctx, "", ref) },
		"reset":    func(e *env, ref string) (domains.Result, error) { return e.svc.Reset(e.ctx, "", ref) },
		"destroy":  func(e *env, ref string) (domains.Result, error) { return e.svc.Destroy(e.ctx, "", ref) },
		"shutdown": func(e *env, ref string) (domains.Result, error) { return e.svc.Shutdown(e.ctx, "", ref) },
		"undefine": func(e *env, ref string) (domains.Result, error) { return e.svc.Undefine(e.ctx, "", ref) },
	}
	cases := []struct {
		verb  string
		state string
		setup setup
	}{
		{"suspend", "shut off", shutoff},
		{"suspend", "paused", paused},
		{"suspend", "crashed", crashed},
		{"resume", "shut off", shutoff},
		{"resume", "running", running},
		{"resume", "in shutdown", inShutdown},
		{"resume", "crashed", crashed},
		{"reset", "shut off", shutoff},
		{"reset", "crashed", crashed},
		{"destroy", "shut off", shutoff},
		{"shutdown", "shut off", shutoff},
		{"shutdown", "in shutdown", inShutdown},
		{"shutdown", "crashed", crashed},
		{"start", "running", running},
		{"start", "paused", paused},
		{"start", "in shutdown", inShutdown},
		{"start", "crashed", crashed},
		{"undefine", "running", running},
		{"undefine", "crashed", crashed},
	}
	for _, c := range cases {
		t.Run(c.verb+" when "+c.state, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("vm", clockUTC)
			c.setup(e, cfg)
			if st := e.get("vm").State; string(st) != c.state {
				t.Fatalf("setup reached %q, want %q", st, c.state)
			}
			before, starts := e.log.LastSeq(), len(e.drv.Starts())
			var calls []string
			if g := e.drv.Guest(cfg.UUID); g != nil {
				calls = g.Calls()
			}
			_, err := verbs[c.verb](e, "vm")
			wantCode(t, err, domains.ErrConflict)
			if e.log.LastSeq() != before {
				t.Fatalf("appended %v", types(e.eventsAfter(before)))
			}
			if len(e.drv.Starts()) != starts {
				t.Fatal("driver Start called")
			}
			if g := e.drv.Guest(cfg.UUID); g != nil && !reflect.DeepEqual(g.Calls(), calls) {
				t.Fatalf("guest touched: %v -> %v", calls, g.Calls())
			}
			if st := e.get("vm").State; string(st) != c.state {
				t.Fatalf("state moved to %q", st)
			}
		})
	}
}

func TestServiceIdempotent(t *testing.T) {
	t.Run("start twice", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		r1, err1 := e.svc.Start(e.ctx, "cmd-1", "vm", domains.StartOptions{Paused: true})
		r2, err2 := e.svc.Start(e.ctx, "cmd-1", "vm", domains.StartOptions{Paused: true})
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("results differ:\n%+v\n%+v", r1, r2)
		}
		if n := len(e.drv.Starts()); n != 1 {
			t.Fatalf("driver Start called %d times", n)
		}
		if e.log.LastSeq() != 3 {
			t.Fatalf("log at %d", e.log.LastSeq())
		}
		// Another ID is another command: conflict now.
		_, err := e.svc.Start(e.ctx, "cmd-2", "vm", domains.StartOptions{})
		wantCode(t, err, domains.ErrConflict)
		// The record outlives the agent.
		e.restart(e.drv)
		r3, err := e.svc.Start(e.ctx, "cmd-1", "vm", domains.StartOptions{Paused: true})
		if err != nil || !reflect.DeepEqual(r1, r3) {
			t.Fatalf("after restart: %+v %v", r3, err)
		}
	})
	t.Run("every verb", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.define("vm", clockUTC)
		r1, _ := e.svc.Define(e.ctx, "def", cfgNamed("vm2", uuidB, clockUTC))
		r2, err := e.svc.Define(e.ctx, "def", cfgNamed("vm2", uuidB, clockUTC))
		if err != nil || !reflect.DeepEqual(r1, r2) {
			t.Fatalf("define retry: %+v %+v %v", r1, r2, err)
		}
		g := e.start(cfg)
		for _, v := range []struct {
			id, method string
			do         func(id string) (domains.Result, error)
		}{
			{"sus", "Pause", func(id string) (domains.Result, error) { return e.svc.Suspend(e.ctx, id, "vm") }},
			{"res", "Resume", func(id string) (domains.Result, error) { return e.svc.Resume(e.ctx, id, "vm") }},
			{"rst", "Reset", func(id string) (domains.Result, error) { return e.svc.Reset(e.ctx, id, "vm") }},
			{"pwr", "Powerdown", func(id string) (domains.Result, error) { return e.svc.Shutdown(e.ctx, id, "vm") }},
			{"dst", "Kill", func(id string) (domains.Result, error) { return e.svc.Destroy(e.ctx, id, "vm") }},
			{"und", "", func(id string) (domains.Result, error) { return e.svc.Undefine(e.ctx, id, "vm") }},
		} {
			before := e.log.LastSeq()
			a, err1 := v.do(v.id)
			b, err2 := v.do(v.id)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: %+v %v / %+v %v", v.id, a, err1, b, err2)
			}
			want := uint64(1)
			if v.id == "pwr" {
				want = 0 // the guest decides; only the command is recorded
			}
			if e.log.LastSeq() != before+want {
				t.Fatalf("%s: %d events", v.id, e.log.LastSeq()-before)
			}
			if v.method != "" && g.CallCount(v.method) != 1 {
				t.Fatalf("%s: guest.%s called %d times", v.id, v.method, g.CallCount(v.method))
			}
		}
	})
	t.Run("concurrent duplicates", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		const n = 32
		var wg sync.WaitGroup
		results := make([]domains.Result, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i], errs[i] = e.svc.Start(e.ctx, "same", "vm", domains.StartOptions{})
			}(i)
		}
		wg.Wait()
		for i := range results {
			if errs[i] != nil || !reflect.DeepEqual(results[i], results[0]) {
				t.Fatalf("call %d: %+v %v; first %+v", i, results[i], errs[i], results[0])
			}
		}
		if n := len(e.drv.Starts()); n != 1 {
			t.Fatalf("driver Start called %d times", n)
		}
		if e.log.LastSeq() != 2 {
			t.Fatalf("log at %d", e.log.LastSeq())
		}
	})
	t.Run("concurrent different IDs", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		const n = 16
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, errs[i] = e.svc.Start(e.ctx, fmt.Sprintf("id-%d", i), "vm", domains.StartOptions{})
			}(i)
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, domains.ErrConflict):
				t.Errorf("unexpected error %v", err)
			}
		}
		if ok != 1 || len(e.drv.Starts()) != 1 {
			t.Fatalf("%d starts succeeded, driver called %d times", ok, len(e.drv.Starts()))
		}
	})
	t.Run("command ID too long", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.svc.Define(e.ctx, strings.Repeat("x", 129), cfgNamed("vm", uuidA, clockUTC))
		wantCode(t, err, domains.ErrInvalid)
		if e.log.LastSeq() != 0 {
			t.Fatal("appended")
		}
	})
	t.Run("waiting duplicate honours its context", func(t *testing.T) {
		e := newEnv(t)
		e.define("vm", clockUTC)
		release := make(chan struct{})
		entered := make(chan struct{})
		e.drv.OnStart(func(domains.StartSpec, *domainstest.FakeGuest) { close(entered); <-release })
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.Start(e.ctx, "slow", "vm", domains.StartOptions{})
			done <- err
		}()
		<-entered
		ctx, cancel := context.WithTimeout(e.ctx, 20*time.Millisecond)
		defer cancel()
		_, err := e.svc.Start(ctx, "slow", "vm", domains.StartOptions{})
		wantCode(t, err, domains.ErrUnavailable)
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestServiceConcurrentDomains: commands on different domains run in
// parallel; however their appends interleave, the live projection must
// fold every event (in sequence order) and equal the replayed log.
func TestServiceConcurrentDomains(t *testing.T) {
	e := newEnv(t)
	a := e.define("a", clockUTC)
	b := e.define("b", clockUTC)
	aIn, bAppended := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var bSeq uint64
	e.log.OnAppend(func(req domains.AppendRequest, seqs []uint64) {
		switch req.Domain {
		case a.UUID:
			once.Do(func() {
				close(aIn)
				// Hold a's append between the log and the fold until b
				// appended and b's event was folded (or long enough to
				// know that b cannot get there first).
				deadline := time.After(300 * time.Millisecond)
				select {
				case <-bAppended:
				case <-deadline:
					return
				}
				for e.svc.LastSeq() < bSeq {
					select {
					case <-deadline:
						return
					case <-time.After(time.Millisecond):
					}
				}
			})
		case b.UUID:
			bSeq = seqs[0]
			close(bAppended)
		}
	})
	errA := make(chan error, 1)
	go func() {
		_, err := e.svc.Start(e.ctx, "", "a", domains.StartOptions{})
		errA <- err
	}()
	<-aIn
	if _, err := e.svc.Start(e.ctx, "", "b", domains.StartOptions{}); err != nil {
		t.Errorf("start b: %v", err)
	}
	if err := <-errA; err != nil {
		t.Errorf("start a: %v", err)
	}
	e.log.OnAppend(nil)
	for _, c := range []domains.Config{a, b} {
		if d := e.get(c.Name); d.State != domains.StateRunning {
			t.Errorf("%s: %q", c.Name, d.State)
		}
	}

	// Many domains, many commands and hints at once.
	var cfgs []domains.Config
	for i := 0; i < 8; i++ {
		cfgs = append(cfgs, e.define(fmt.Sprintf("p%d", i), clockUTC))
	}
	var wg sync.WaitGroup
	for _, c := range cfgs {
		wg.Add(1)
		go func(c domains.Config) {
			defer wg.Done()
			if _, err := e.svc.Start(e.ctx, "", c.Name, domains.StartOptions{}); err != nil {
				t.Error(err)
				return
			}
			g := e.drv.Guest(c.UUID)
			for j := 0; j < 5; j++ {
				g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: int64(j + 1)})
				if _, err := e.svc.Suspend(e.ctx, "", c.Name); err != nil {
					t.Error(err)
				}
				if _, err := e.svc.Resume(e.ctx, "", c.Name); err != nil {
					t.Error(err)
				}
			}
		}(c)
	}
	wg.Wait()
	// a, b: define + start; 8 domains x (define + start + 5 x (rtc + suspend + resume)).
	e.waitSeq(2*2 + 8*(2+5*3))
	e.checkReplay(e.svc)
}

func TestServiceHints(t *testing.T) {
	const marker = 424242
	type step func(e *env, g *domainstest.FakeGuest, s0 uint64)
	push := func(ev domains.GuestEvent) step {
		return func(e *env, g *domainstest.FakeGuest, s0 uint64) {
			if !g.Push(ev) {
				e.t.Fatal("monitor closed")
			}
		}
	}
	status := func(running bool, s string) step {
		return func(e *env, g *domainstest.FakeGuest, s0 uint64) {
			g.SetStatus(domains.GuestStatus{Running: running, Status: s})
		}
	}
	exit := func(x domains.GuestExit) step {
		return func(e *env, g *domainstest.FakeGuest, s0 uint64) { g.Terminate(x) }
	}
	wait := func(n int) step { // wait for the first n events, so the next status change is not raced
		return func(e *env, g *domainstest.FakeGuest, s0 uint64) { e.waitSeq(s0 + uint64(n)) }
	}
	cases := []struct {
		name   string
		steps  []step
		want   []domains.Payload
		exits  bool // QEMU is gone at the end: no marker possible
		state  domains.State
		reason string
	}{
		{"rtc change", []step{push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 3600})},
			[]domains.Payload{domains.RTCChanged{Offset: 3600, Adjustment: 3600}}, false, domains.StateRunning, domains.StartBooted},
		{"panic then exit", []step{
			push(domains.GuestEvent{Kind: domains.GuestPanicked, Reason: "pause", Info: "hyper-v"}),
			exit(domains.GuestExit{Code: 0}),
		}, []domains.Payload{
			domains.Crashed{Reason: "guest-panicked", Action: "pause", Info: "hyper-v"},
			domains.Stopped{Reason: domains.StopCrashed, Detail: "guest panicked"},
		}, true, domains.StateShutoff, domains.StopCrashed},
		{"panic stays crashed", []step{push(domains.GuestEvent{Kind: domains.GuestPanicked, Reason: "pause"})},
			[]domains.Payload{domains.Crashed{Reason: "guest-panicked", Action: "pause"}}, false, domains.StateCrashed, "guest-panicked"},
		{"guest shutdown then exit", []step{
			push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true, Reason: "guest-shutdown"}),
			exit(domains.GuestExit{Code: 0}),
		}, []domains.Payload{
			domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"},
			domains.Stopped{Reason: domains.StopShutdown},
		}, true, domains.StateShutoff, domains.StopShutdown},
		{"host shutdown", []step{push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: false, Reason: "host-qmp-system-powerdown"})},
			[]domains.Payload{domains.Shutdown{Reason: domains.ShutdownHost, QEMUReason: "host-qmp-system-powerdown"}},
			false, domains.StateShutdown, domains.ShutdownHost},
		{"second shutdown hint", []step{
			push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true}),
			push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: false}),
		}, []domains.Payload{domains.Shutdown{Reason: domains.ShutdownGuest}}, false, domains.StateShutdown, domains.ShutdownGuest},
		{"shutdown after panic", []step{
			push(domains.GuestEvent{Kind: domains.GuestPanicked, Reason: "poweroff"}),
			push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true, Reason: "guest-panic"}),
			exit(domains.GuestExit{Code: 0}),
		}, []domains.Payload{
			domains.Crashed{Reason: "guest-panicked", Action: "poweroff"},
			domains.Stopped{Reason: domains.StopCrashed, Detail: "guest panicked"},
		}, true, domains.StateShutoff, domains.StopCrashed},
		{"unexpected exit", []step{exit(domains.GuestExit{Code: 1})},
			[]domains.Payload{domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU exited with status 1"}},
			true, domains.StateShutoff, domains.StopCrashed},
		{"killed from outside", []step{exit(domains.GuestExit{Code: -1, Signaled: true, Err: "signal: killed"})},
			[]domains.Payload{domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU ended: signal: killed"}},
			true, domains.StateShutoff, domains.StopCrashed},
		{"stop hint paused", []step{status(false, "paused"), push(domains.GuestEvent{Kind: domains.GuestStop})},
			[]domains.Payload{domains.Paused{Reason: domains.PauseUnknown}}, false, domains.StatePaused, domains.PauseUnknown},
		{"stop hint io-error", []step{status(false, "io-error"), push(domains.GuestEvent{Kind: domains.GuestStop})},
			[]domains.Payload{domains.Paused{Reason: domains.PauseIOError}}, false, domains.StatePaused, domains.PauseIOError},
		{"stop hint postmigrate", []step{status(false, "postmigrate"), push(domains.GuestEvent{Kind: domains.GuestStop})},
			[]domains.Payload{domains.Paused{Reason: domains.PauseMigration}}, false, domains.StatePaused, domains.PauseMigration},
		{"stop hint but running", []step{push(domains.GuestEvent{Kind: domains.GuestStop})},
			nil, false, domains.StateRunning, domains.StartBooted},
		{"stop then resume", []step{
			status(false, "paused"), push(domains.GuestEvent{Kind: domains.GuestStop}), wait(1),
			status(true, "running"), push(domains.GuestEvent{Kind: domains.GuestResume}),
		}, []domains.Payload{domains.Paused{Reason: domains.PauseUnknown}, domains.Resumed{Reason: "unpaused"}},
			false, domains.StateRunning, "unpaused"},
		{"status unreadable", []step{
			func(e *env, g *domainstest.FakeGuest, s0 uint64) { g.Fail("Status", errors.New("QMP gone")) },
			status(false, "paused"), push(domains.GuestEvent{Kind: domains.GuestStop}),
		}, nil, false, domains.StateRunning, domains.StartBooted},
		{"host reset", []step{push(domains.GuestEvent{Kind: domains.GuestReset, Guest: false, Reason: "host-qmp-system-reset"})},
			nil, false, domains.StateRunning, domains.StartBooted},
		{"guest reset", []step{push(domains.GuestEvent{Kind: domains.GuestReset, Guest: true, Reason: "guest-reset"})},
			[]domains.Payload{domains.Reset{Guest: true, Reason: "guest-reset"}}, false, domains.StateRunning, domains.StartBooted},
		{"device not in the config deleted", []step{push(domains.GuestEvent{Kind: domains.GuestDeviceDeleted, Device: "rng0"})},
			nil, false, domains.StateRunning, domains.StartBooted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("vm", clockUTC)
			g := e.start(cfg)
			s0 := e.log.LastSeq()
			for _, s := range c.steps {
				s(e, g, s0)
			}
			want := c.want
			if !c.exits {
				// A hint that must produce an event, queued behind the
				// others: once it is folded, all of them were.
				g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: marker})
				want = append(append([]domains.Payload(nil), want...), domains.RTCChanged{Offset: marker, Adjustment: marker})
			}
			e.waitSeq(s0 + uint64(len(want)))
			e.svc.Close() // waits for the watcher
			got := e.eventsAfter(s0)
			if !reflect.DeepEqual(payloads(got), want) {
				t.Fatalf("events:\n got %+v\nwant %+v", payloads(got), want)
			}
			for _, ev := range got {
				if ev.CommandID != "" || ev.Host != "host-a" {
					t.Errorf("hint event %+v: want no command ID and host-a", ev)
				}
			}
			d := e.get("vm")
			if d.State != c.state || d.Reason != c.reason {
				t.Fatalf("domain %q/%q, want %q/%q", d.State, d.Reason, c.state, c.reason)
			}
			if c.exits != (d.Live == nil) {
				t.Fatalf("live %+v", d.Live)
			}
		})
	}
}

// TestServiceRTC: adjustments are clock base + offset, every time, and
// they survive stop and start.
func TestServiceRTC(t *testing.T) {
	e := newEnv(t) // NY winter: UTC-5
	k := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisLocaltime}
	cfg := e.define("vm", k)
	g := e.start(cfg)
	const base = 3600 - 18000
	if d := e.get("vm"); d.Live.ClockBase != base {
		t.Fatalf("clock base %d", d.Live.ClockBase)
	}
	for i, off := range []int64{1000, 5000, -20000} {
		g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: off})
		e.waitSeq(uint64(3 + i))
		want := domains.RTCChanged{Offset: off, Adjustment: base + off}
		if ev := e.lastEvent(); !reflect.DeepEqual(ev.Payload, want) {
			t.Fatalf("change %d: %+v, want %+v", i, ev.Payload, want)
		}
		d := e.get("vm")
		if d.Config.Clock != (domains.Clock{Offset: domains.OffsetVariable, Adjustment: base + off, Basis: domains.BasisUTC}) {
			t.Fatalf("change %d: clock %+v", i, d.Config.Clock)
		}
		if d.Live.RTC != base+off || d.Live.ClockBase != base {
			t.Fatalf("change %d: live %+v", i, d.Live)
		}
	}
	// Off and on again in summer: the stored adjustment (basis utc now)
	// is the new base, DST notwithstanding.
	if _, err := e.svc.Destroy(e.ctx, "", "vm"); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(time.Date(2024, 7, 15, 12, 0, 0, 0, domainstest.NewYork(t)))
	g = e.start(cfg)
	specs := e.drv.Starts()
	if got := specs[len(specs)-1].ClockBase; got != base-20000 {
		t.Fatalf("restart clock base %d, want %d", got, base-20000)
	}
	seq := e.log.LastSeq()
	g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 7})
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); !reflect.DeepEqual(ev.Payload, domains.RTCChanged{Offset: 7, Adjustment: base - 20000 + 7}) {
		t.Fatalf("after restart: %+v", ev.Payload)
	}

	// utc and localtime clocks keep their config; only Live moves.
	for _, k := range []domains.Clock{clockUTC, clockLocal} {
		c := e.define("vm-"+k.Offset, k)
		g := e.start(c)
		b := e.get(c.Name).Live.ClockBase
		seq := e.log.LastSeq()
		g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 60})
		e.waitSeq(seq + 1)
		d := e.get(c.Name)
		if d.Config.Clock != k || d.Live.RTC != b+60 {
			t.Fatalf("%s: clock %+v live %+v", k.Offset, d.Config.Clock, d.Live)
		}
	}
}

func TestServiceShutdownFlow(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("vm", clockUTC)
	g := e.start(cfg)
	res, err := e.svc.Shutdown(e.ctx, "", "vm")
	if err != nil || len(res.Seqs) != 0 || res.State != domains.StateRunning || g.CallCount("Powerdown") != 1 {
		t.Fatalf("shutdown: %+v %v", res, err)
	}
	// The guest obeys.
	g.Push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true, Reason: "guest-shutdown"})
	e.waitSeq(3)
	_, err = e.svc.Shutdown(e.ctx, "", "vm")
	wantCode(t, err, domains.ErrConflict)
	g.Terminate(domains.GuestExit{})
	e.waitSeq(4)
	if d := e.get("vm"); d.State != domains.StateShutoff || d.Reason != domains.StopShutdown || d.Live != nil {
		t.Fatalf("domain %+v", d)
	}
	// Undefine works now; the dead guest is forgotten.
	if _, err := e.svc.Undefine(e.ctx, "", "vm"); err != nil {
		t.Fatal(err)
	}
}

func TestServiceRecover(t *testing.T) {
	// running: a domain running under a first agent, which then stops.
	running := func(t *testing.T, k domains.Clock) (*env, domains.Config) {
		e := newEnv(t)
		cfg := e.define("vm", k)
		g := e.start(cfg)
		e.define("off", clockUTC) // shut off: Recover leaves it alone
		e.restart(nil)            // agent down: guests detached, not killed
		if !g.Detached() || g.Exited() {
			t.Fatalf("old guest: detached %v exited %v", g.Detached(), g.Exited())
		}
		return e, cfg
	}
	t.Run("gone", func(t *testing.T) {
		e, cfg := running(t, clockUTC)
		drv := domainstest.NewFakeDriver()
		e.restart(drv)
		seq := e.log.LastSeq()
		if err := e.svc.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
		want := []domains.Payload{domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU was gone when the agent reconnected"}}
		if got := payloads(e.eventsAfter(seq)); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %+v", got)
		}
		if d := e.get("vm"); d.State != domains.StateShutoff || d.Live != nil {
			t.Fatalf("domain %+v", d)
		}
		if a := drv.Attaches(); len(a) != 1 || a[0].UUID != cfg.UUID {
			t.Fatalf("attaches %+v", a)
		}
		if err := e.svc.Recover(e.ctx); err != nil || e.log.LastSeq() != seq+1 || len(drv.Attaches()) != 1 {
			t.Fatalf("second recover: %v, %d events", err, e.log.LastSeq()-seq)
		}
	})
	t.Run("rtc moved", func(t *testing.T) {
		k := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisLocaltime}
		e, cfg := running(t, k)
		base := e.get("vm").Live.ClockBase // 600 - 18000
		// While the agent was away, time passed and the guest set its
		// RTC two hours ahead of where it was.
		now := e.clk.Advance(90 * time.Minute)
		drv := domainstest.NewFakeDriver()
		g := domainstest.NewFakeGuest(4321, "kvm")
		g.SetStatus(domains.GuestStatus{Running: true, Status: "running", RTC: now.UTC().Add(time.Duration(base+7200) * time.Second)})
		drv.SetAttachable(cfg.UUID, g)
		e.restart(drv)
		seq := e.log.LastSeq()
		if err := e.svc.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
		want := []domains.Payload{domains.RTCChanged{Offset: 7200, Adjustment: base + 7200}}
		if got := payloads(e.eventsAfter(seq)); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %+v, want %+v", got, want)
		}
		d := e.get("vm")
		if d.Config.Clock.Adjustment != base+7200 || d.Live.RTC != base+7200 || d.Live.ClockBase != base {
			t.Fatalf("domain clock %+v live %+v", d.Config.Clock, d.Live)
		}
		// Nothing twice: not on a second Recover ...
		if err := e.svc.Recover(e.ctx); err != nil || e.log.LastSeq() != seq+1 {
			t.Fatalf("second recover: %v, %d events", err, e.log.LastSeq()-seq)
		}
		// ... and the guest is watched: a new RTC_CHANGE is relative to
		// the base QEMU started with, still.
		g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 9000})
		e.waitSeq(seq + 2)
		if ev := e.lastEvent(); !reflect.DeepEqual(ev.Payload, domains.RTCChanged{Offset: 9000, Adjustment: base + 9000}) {
			t.Fatalf("hint after recover: %+v", ev.Payload)
		}
		// ... nor by another agent restart: the RTC (set by the 9000
		// change) is where the log says, within the 2 s tolerance.
		seq = e.log.LastSeq()
		drv2 := domainstest.NewFakeDriver()
		g2 := domainstest.NewFakeGuest(4321, "kvm")
		now = e.clk.Advance(time.Minute)
		g2.SetStatus(domains.GuestStatus{Running: true, Status: "running", RTC: now.UTC().Add(time.Duration(base+9000+1) * time.Second)})
		drv2.SetAttachable(cfg.UUID, g2)
		e.restart(drv2)
		if err := e.svc.Recover(e.ctx); err != nil || e.log.LastSeq() != seq {
			t.Fatalf("recover after restart: %v, %v", err, types(e.eventsAfter(seq)))
		}
	})
	t.Run("paused while away", func(t *testing.T) {
		e, cfg := running(t, clockUTC)
		drv := domainstest.NewFakeDriver()
		g := domainstest.NewFakeGuest(1, "tcg")
		g.SetStatus(domains.GuestStatus{Running: false, Status: "paused"})
		drv.SetAttachable(cfg.UUID, g)
		e.restart(drv)
		seq := e.log.LastSeq()
		if err := e.svc.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
		if got := payloads(e.eventsAfter(seq)); !reflect.DeepEqual(got, []domains.Payload{domains.Paused{Reason: domains.PauseUnknown}}) {
			t.Fatalf("events %+v", got)
		}
		// The reattached guest takes commands.
		if _, err := e.svc.Resume(e.ctx, "", "vm"); err != nil || g.CallCount("Resume") != 1 {
			t.Fatalf("resume after recover: %v", err)
		}
	})
	t.Run("unchanged", func(t *testing.T) {
		e, cfg := running(t, clockLocal)
		drv := domainstest.NewFakeDriver()
		g := domainstest.NewFakeGuest(1, "kvm")
		base := e.get("vm").Live.ClockBase
		g.SetStatus(domains.GuestStatus{Running: true, Status: "running", RTC: e.clk.Now().UTC().Add(time.Duration(base) * time.Second)})
		drv.SetAttachable(cfg.UUID, g)
		e.restart(drv)
		seq := e.log.LastSeq()
		if err := e.svc.Recover(e.ctx); err != nil || e.log.LastSeq() != seq {
			t.Fatalf("recover: %v, %v", err, types(e.eventsAfter(seq)))
		}
		// Exit after recovery is noticed.
		g.Terminate(domains.GuestExit{Code: 1})
		e.waitSeq(seq + 1)
		if d := e.get("vm"); d.State != domains.StateShutoff {
			t.Fatalf("state %q", d.State)
		}
	})
	t.Run("attach error", func(t *testing.T) {
		e, _ := running(t, clockUTC)
		drv := domainstest.NewFakeDriver()
		drv.FailAttach(errors.New("permission denied"))
		e.restart(drv)
		seq := e.log.LastSeq()
		if err := e.svc.Recover(e.ctx); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("Recover = %v", err)
		}
		if e.log.LastSeq() != seq || e.get("vm").State != domains.StateRunning {
			t.Fatal("an attach error was taken for a dead guest")
		}
	})
}

func TestServiceSnapshotAndNotify(t *testing.T) {
	log := domainstest.NewMemLog()
	var mu sync.Mutex
	var seen []uint64
	svc := owner.NewService(owner.Options{Log: log, Time: domainstest.NewFixedClock(t0), Host: "h",
		OnCommit: func(e domains.Event) { mu.Lock(); seen = append(seen, e.Seq); mu.Unlock() }})
	defer svc.Close()
	ctx := context.Background()
	if _, err := svc.Define(ctx, "", cfgNamed("a", uuidA, clockUTC)); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Define(ctx, "", cfgNamed("b", uuidB, clockUTC)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !reflect.DeepEqual(seen, []uint64{1, 2}) {
		t.Errorf("OnCommit saw %v", seen)
	}
	mu.Unlock()
	seq, data, err := svc.Snapshot()
	if err != nil || seq != 2 {
		t.Fatalf("snapshot %d %v", seq, err)
	}
	p, err := domains.UnmarshalSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if ok, diff := svc.Equal(p); !ok {
		t.Fatal(diff)
	}
	// A service started from the snapshot carries on.
	svc2 := owner.NewService(owner.Options{Log: log, Projection: p})
	defer svc2.Close()
	if _, err := svc2.Undefine(ctx, "", "a"); err != nil {
		t.Fatal(err)
	}
	if r, _ := log.Replay(); r != nil {
		if ok, diff := svc2.Equal(r); !ok {
			t.Fatal(diff)
		}
	}
}
