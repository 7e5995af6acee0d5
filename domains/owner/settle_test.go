package owner_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// settlingDriver is a fake driver with domains.Settler: Settle hands back
// the guest registered for a domain (a QEMU whose start completed), else
// reports nothing left, and records every call.
type settlingDriver struct {
	*domainstest.FakeDriver
	mu      sync.Mutex
	orphans map[uuid.UUID]*domainstest.FakeGuest
	settled []uuid.UUID
}

func (d *settlingDriver) Settle(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settled = append(d.settled, cfg.UUID)
	if g := d.orphans[cfg.UUID]; g != nil {
		delete(d.orphans, cfg.UUID)
		return g, nil
	}
	return nil, domains.Errorf(domains.CodeNotFound, "no QEMU left")
}

func (d *settlingDriver) calls() []uuid.UUID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uuid.UUID(nil), d.settled...)
}

// Issue 7, defects 5 and 14 (the service's side; the driver's is
// hypervisor/qemu TestSettle): Recover asks the driver to settle every
// domain the log shows without a live QEMU. An adopted QEMU of a shut-off
// domain is recorded as started and watched; a QEMU gone while the agent
// was away is settled (its run files cleaned) and recorded as crashed.
func TestServiceRecoverSettles(t *testing.T) {
	k := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisUTC}
	e := newEnv(t)
	off := e.define("off", k)   // the agent died during its start
	idle := e.define("idle", k) // shut off, nothing left
	gone := e.define("gone", clockUTC)
	e.start(gone)
	e.restart(nil)

	drv := &settlingDriver{FakeDriver: domainstest.NewFakeDriver(), orphans: map[uuid.UUID]*domainstest.FakeGuest{}}
	g := domainstest.NewFakeGuest(777, "tcg")
	g.SetStatus(domains.GuestStatus{Running: true, Status: "running"})
	drv.orphans[off.UUID] = g
	e.restart(drv)
	seq := e.log.LastSeq()
	if err := e.svc.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	settled := map[uuid.UUID]bool{}
	for _, id := range drv.calls() {
		settled[id] = true
	}
	if !settled[off.UUID] || !settled[idle.UUID] || !settled[gone.UUID] {
		t.Fatalf("settled %v; want off, idle and gone", drv.calls())
	}
	byDomain := map[uuid.UUID][]domains.Payload{}
	for _, ev := range e.eventsAfter(seq) {
		byDomain[ev.Domain] = append(byDomain[ev.Domain], ev.Payload)
	}
	wantOff := []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 777, ClockBase: 600}}
	if !reflect.DeepEqual(byDomain[off.UUID], wantOff) {
		t.Errorf("adopted: %+v, want %+v", byDomain[off.UUID], wantOff)
	}
	wantGone := []domains.Payload{domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU was gone when the agent reconnected"}}
	if !reflect.DeepEqual(byDomain[gone.UUID], wantGone) {
		t.Errorf("gone: %+v, want %+v", byDomain[gone.UUID], wantGone)
	}
	if len(byDomain[idle.UUID]) != 0 {
		t.Errorf("idle: %+v, want nothing", byDomain[idle.UUID])
	}
	if d := e.get("off"); d.State != domains.StateRunning || d.Live == nil || d.Live.PID != 777 {
		t.Fatalf("adopted domain %+v", d)
	}
	// The adopted guest is watched: its exit is recorded.
	seq = e.log.LastSeq()
	g.Terminate(domains.GuestExit{Code: 0})
	e.waitSeq(seq + 1)
	if d := e.get("off"); d.State != domains.StateShutoff {
		t.Fatalf("after the adopted QEMU exited: %s", d.State)
	}
}

// Issue 7, defect 14: destroy of a domain whose recovery failed settles
// it when its QEMU is gone, so the run files of a dead guest go here too.
func TestDestroyUnwatchedSettles(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("vm", clockUTC)
	e.start(cfg)
	e.restart(nil)
	drv := &settlingDriver{FakeDriver: domainstest.NewFakeDriver()}
	drv.FailAttach(domains.Errorf(domains.CodeUnavailable, "monitor busy"))
	e.restart(drv)
	if err := e.svc.Recover(e.ctx); err == nil {
		t.Fatal("Recover with a busy monitor: no error")
	}
	if len(drv.calls()) != 0 {
		t.Fatalf("settled %v before destroy: a busy monitor is not a dead QEMU", drv.calls())
	}
	drv.FailAttach(nil) // now QEMU is gone
	if _, err := e.svc.Destroy(e.ctx, "", "vm"); err != nil {
		t.Fatal(err)
	}
	if c := drv.calls(); len(c) != 1 || c[0] != cfg.UUID {
		t.Fatalf("settled %v, want %s once", c, cfg.UUID)
	}
	if d := e.get("vm"); d.State != domains.StateShutoff {
		t.Fatalf("after destroy: %s", d.State)
	}
}
