package owner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// TestDeviceVerbs (fake guest): an attach that QEMU refuses records
// nothing; a detach the guest refuses (DEVICE_UNPLUG_GUEST_ERROR) or does
// not complete by the timeout is device-detach-failed and the device
// stays; DEVICE_DELETED releases the backends, then records the detach.
func TestDeviceVerbs(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	g := e.start(cfg)
	nic := domains.DeviceSpec{Kind: domains.KindNIC, ID: "nic1", Mode: "user"}

	g.Fail("AttachDevice", errors.New("device_add: no such driver"))
	seq := e.log.LastSeq()
	if _, err := e.svc.AttachDevice(e.ctx, "", "web", nic, domains.DeviceOptions{}); err == nil {
		t.Fatal("attach succeeded")
	}
	if e.log.LastSeq() != seq {
		t.Fatal("a failed attach appended")
	}
	g.Fail("AttachDevice", nil)
	if _, err := e.svc.AttachDevice(e.ctx, "", "web", nic, domains.DeviceOptions{}); err != nil {
		t.Fatal(err)
	}

	// Refused by the guest.
	if _, err := e.svc.DetachDevice(e.ctx, "", "web", "nic1", domains.DeviceOptions{}); err != nil {
		t.Fatal(err)
	}
	seq = e.log.LastSeq()
	g.Push(domains.GuestEvent{Kind: domains.GuestDeviceUnplugError, Device: "nic1"})
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); ev.Type != domains.TypeDeviceDetachFailed {
		t.Fatalf("DEVICE_UNPLUG_GUEST_ERROR recorded as %s", ev.Type)
	}

	// The timeout.
	if _, err := e.svc.DetachDevice(e.ctx, "", "web", "nic1", domains.DeviceOptions{Timeout: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	seq = e.log.LastSeq()
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); ev.Type != domains.TypeDeviceDetachFailed || len(e.get("web").Pending) != 0 {
		t.Fatalf("after the timeout: %s, pending %v", ev.Type, e.get("web").Pending)
	}

	// Completed.
	if _, err := e.svc.DetachDevice(e.ctx, "", "web", "nic1", domains.DeviceOptions{}); err != nil {
		t.Fatal(err)
	}
	seq = e.log.LastSeq()
	releases := g.CallCount("ReleaseDevice")
	g.Push(domains.GuestEvent{Kind: domains.GuestDeviceDeleted, Device: "nic1"})
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); ev.Type != domains.TypeDeviceDetached || g.CallCount("ReleaseDevice") != releases+1 {
		t.Fatalf("DEVICE_DELETED: %s, releases %d", ev.Type, g.CallCount("ReleaseDevice")-releases)
	}
	if d := e.get("web"); len(d.Devices()) != 0 {
		t.Fatalf("device set %+v", d.Devices())
	}
}
