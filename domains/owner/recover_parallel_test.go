package owner_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// gatheringDriver holds each Attach until another is in flight beside it
// (or 5 s pass), and records the most in flight at once.
type gatheringDriver struct {
	*domainstest.FakeDriver
	in, peak atomic.Int32
	two      chan struct{}
	once     sync.Once
}

func (d *gatheringDriver) Attach(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	n := d.in.Add(1)
	defer d.in.Add(-1)
	for p := d.peak.Load(); n > p && !d.peak.CompareAndSwap(p, n); p = d.peak.Load() {
	}
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
