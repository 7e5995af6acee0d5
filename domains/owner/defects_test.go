package owner_test

import (
	"context"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// QEMU's DEVICE_DELETED (the guest released a device) is recorded as
// device-detached and leaves the config. (The watcher used to drop it.)
func TestDeviceDeletedRecorded(t *testing.T) {
	e := newEnv(t)
	cfg := cfgNamed("web", uuidA, clockUTC)
	cfg.Devices = []domains.Device{{ID: "rng0", Driver: "virtio-rng-pci"}}
	if _, err := e.svc.Define(e.ctx, "", cfg); err != nil {
		t.Fatal(err)
	}
	g := e.start(cfg)
	seq := e.log.LastSeq()
	g.Push(domains.GuestEvent{Kind: domains.GuestDeviceDeleted, Device: "rng0"})
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); ev.Type != domains.TypeDeviceDetached || ev.Payload.(domains.DeviceDetached).ID != "rng0" {
		t.Fatalf("DEVICE_DELETED recorded as %s %+v", ev.Type, ev.Payload)
	}
	if d := e.get("web"); len(d.Config.Devices) != 0 {
		t.Fatalf("device still in the config: %+v", d.Config.Devices)
	}
}

// cancelledAfter is a request context that reads as cancelled once the
// guest has received method: the caller gave up while QEMU acted.
type cancelledAfter struct {
	context.Context
	g      *domainstest.FakeGuest
	method string
}

func (c cancelledAfter) Err() error {
	if c.g.CallCount(c.method) > 0 {
		return context.Canceled
	}
	return c.Context.Err()
}

// A shutdown whose caller gave up after the power button was pressed is
// still recorded under its command ID, so the retry gets the first result
// and does not press the button again. (The command-only append used the
// request's context, and failed with it.)
func TestShutdownRecordedAfterCallerGaveUp(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	g := e.start(cfg)
	ctx := cancelledAfter{Context: e.ctx, g: g, method: "Powerdown"}
	first, err := e.svc.Shutdown(ctx, "shut-1", "web")
	if err != nil {
		t.Fatalf("shutdown with a caller that gave up: %v", err)
	}
	again, err := e.svc.Shutdown(e.ctx, "shut-1", "web")
	if err != nil || again.Domain != first.Domain || again.State != first.State {
		t.Fatalf("retry: %+v %v; first %+v", again, err, first)
	}
	if n := g.CallCount("Powerdown"); n != 1 {
		t.Fatalf("the power button was pressed %d times, want once", n)
	}
}

// bareDriver hands out guests with the base port only, no lifecycle
// capability.
type bareDriver struct{ *domainstest.FakeDriver }

func (d bareDriver) Start(ctx context.Context, spec domains.StartSpec) (domains.Guest, error) {
	g, err := d.FakeDriver.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return struct{ domains.Guest }{g}, nil
}

// The lifecycle verbs ask the guest for the capability they need; a guest
// without it is refused as unavailable, untouched.
func TestLifecycleIsACapability(t *testing.T) {
	e := newEnv(t)
	e.svc.Close()
	e.svc = e.newService(bareDriver{e.drv}, nil)
	cfg := e.define("web", clockUTC)
	if _, err := e.svc.Start(e.ctx, "", "web", domains.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Suspend(e.ctx, "", "web")
	wantCode(t, err, domains.ErrUnavailable)
	if calls := e.drv.Guest(cfg.UUID).CallCount("Pause"); calls != 0 {
		t.Fatalf("Pause called %d times", calls)
	}
}
