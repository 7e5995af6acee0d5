package owner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// gatheringDriver holds each Attach until another is in flight beside it
// (or 5 s pass), and records the most in flight at once.
type gatheringDriver struct {
	*domainstest.FakeDriver
	inFlight
	two  chan struct{}
	once sync.Once
}

// inFlight counts calls in flight and the most at once.
type inFlight struct{ in, peak atomic.Int32 }

// enter counts a call in (leave counts it out) and returns how many are in.
func (f *inFlight) enter() int32 {
	n := f.in.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	return n
}

func (f *inFlight) leave() { f.in.Add(-1) }

func (d *gatheringDriver) Attach(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	n := d.enter()
	defer d.leave()
	if n >= 2 {
		d.once.Do(func() { close(d.two) })
	}
	select {
	case <-d.two:
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	return d.FakeDriver.Attach(ctx, cfg)
}

// An agent start reattaches its running guests side by side, not one
// after another (a slow QMP greeting each added up with 100 guests), and
// every one ends up watched: its exit is recorded.
func TestRecoverReattachesTogether(t *testing.T) {
	e := newEnv(t)
	var cfgs []domains.Config
	for i := range 4 {
		cfg := e.define(fmt.Sprintf("vm%d", i), clockUTC)
		e.start(cfg)
		cfgs = append(cfgs, cfg)
	}
	e.define("off", clockUTC)
	e.restart(nil)
	drv := &gatheringDriver{FakeDriver: domainstest.NewFakeDriver(), two: make(chan struct{})}
	guests := map[string]*domainstest.FakeGuest{}
	for i, cfg := range cfgs {
		g := domainstest.NewFakeGuest(1000+i, "kvm")
		drv.SetAttachable(cfg.UUID, g)
		guests[cfg.Name] = g
	}
	e.restart(drv)
	if err := e.svc.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	if p := drv.peak.Load(); p < 2 {
		t.Fatalf("at most %d attach in flight at once: guests were reattached one after another", p)
	}
	if n := len(drv.Attaches()); n != len(cfgs) {
		t.Fatalf("%d attaches, want %d", n, len(cfgs))
	}
	for _, cfg := range cfgs {
		if d := e.get(cfg.Name); d.State != domains.StateRunning {
			t.Fatalf("%s is %s after recover", cfg.Name, d.State)
		}
	}
	seq := e.log.LastSeq()
	guests["vm2"].Terminate(domains.GuestExit{Signaled: true, Err: "killed"})
	e.waitSeq(seq + 1)
	if d := e.get("vm2"); d.State != domains.StateShutoff {
		t.Fatalf("vm2's exit not recorded: %s", d.State)
	}
}

// stallingDriver's Attach of one domain (slow) stalls until every other
// attach has returned, as a QEMU whose QMP greeting never comes; that of
// another (bad) fails at once. It records the most attaches in flight.
type stallingDriver struct {
	*domainstest.FakeDriver
	slow, bad uuid.UUID
	inFlight
	others      int          // attaches besides slow's
	returned    atomic.Int32 // others that returned
	othersDone  chan struct{}
	stalledLong atomic.Bool
}

func (d *stallingDriver) Attach(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	d.enter()
	defer d.leave()
	switch cfg.UUID {
	case d.slow:
		select {
		case <-d.othersDone:
		case <-time.After(20 * time.Second):
			d.stalledLong.Store(true)
		}
		return nil, errors.New("qmp: no greeting")
	case d.bad:
		defer d.other()
		return nil, errors.New("qmp: connection refused")
	}
	defer d.other()
	time.Sleep(10 * time.Millisecond) // a greeting: attaches overlap
	return d.FakeDriver.Attach(ctx, cfg)
}

func (d *stallingDriver) other() {
	if int(d.returned.Add(1)) == d.others {
		close(d.othersDone)
	}
}

// Recover works on at most RecoverParallel domains at once, a domain
// whose QEMU never answers holds up none of the others, and each failure
// is reported under its domain's name, the others recovered.
func TestRecoverBoundedAndPerDomain(t *testing.T) {
	e := newEnv(t)
	var cfgs []domains.Config
	for i := range 3 * owner.RecoverParallel {
		cfg := e.define(fmt.Sprintf("vm%02d", i), clockUTC)
		e.start(cfg)
		cfgs = append(cfgs, cfg)
	}
	e.restart(nil)
	drv := &stallingDriver{FakeDriver: domainstest.NewFakeDriver(), slow: cfgs[0].UUID, bad: cfgs[1].UUID,
		others: len(cfgs) - 1, othersDone: make(chan struct{})}
	for i, cfg := range cfgs[2:] {
		drv.SetAttachable(cfg.UUID, domainstest.NewFakeGuest(1000+i, "kvm"))
	}
	e.restart(drv)
	err := e.svc.Recover(e.ctx)
	if drv.stalledLong.Load() {
		t.Fatal("the other domains waited for the one whose QEMU does not answer")
	}
	if p := drv.peak.Load(); p < 2 || p > owner.RecoverParallel {
		t.Fatalf("%d attaches in flight at most, want 2 to %d", p, owner.RecoverParallel)
	}
	if err == nil || !strings.Contains(err.Error(), `domain "vm00": qmp: no greeting`) || !strings.Contains(err.Error(), `domain "vm01": qmp: connection refused`) {
		t.Fatalf("Recover: %v; want the errors of vm00 and vm01 under their names", err)
	}
	for _, cfg := range cfgs[2:] {
		if strings.Contains(err.Error(), cfg.Name) {
			t.Errorf("Recover's error names %s, which recovered: %v", cfg.Name, err)
		}
		if d := e.get(cfg.Name); d.State != domains.StateRunning {
			t.Errorf("%s is %s after recover", cfg.Name, d.State)
		}
	}
}
