package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// TestHotplugLinuxQEMUView (issue 12, acceptance a, QEMU's side): on the
// Linux guest a virtio-blk disk, a NIC and a DIMM are attached and QEMU's
// own view has each (query-block, qom-list /machine/peripheral,
// query-memory-devices); the guest ejects each on device_del, and after
// DEVICE_DELETED and the release QEMU's block nodes, objects, chardevs,
// peripherals, descriptors and the run directory are as before.
func TestHotplugLinuxQEMUView(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	spec := linuxSpec(t)
	spec.Config.MaxMemoryMiB, spec.Config.MemorySlots = 1024, 2
	g, _ := startLinux(t, d, spec)
	ctx := ctxFor(t, 5*time.Minute)
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	devs := []domains.DeviceSpec{
		{Kind: domains.KindDisk, ID: "blk1", Target: "vdb", Path: img, Format: "raw"},
		{Kind: domains.KindNIC, ID: "nic1", Mode: "user"},
		{Kind: domains.KindMemory, ID: "dimm1", SizeMiB: 256},
	}
	before := viewOf(t, g)
	for _, s := range devs {
		if err := g.AttachDevice(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	v := viewOf(t, g)
	for _, s := range devs {
		if !slices.Contains(v.peripherals, s.ID) {
			t.Fatalf("QEMU's peripherals %v lack %s", v.peripherals, s.ID)
		}
	}
	var blocks []struct {
		QDev     string `json:"qdev"`
		Inserted *struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := g.Monitor().Execute(ctx, "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range blocks {
		found = found || strings.Contains(b.QDev, "/blk1/") && b.Inserted != nil && b.Inserted.NodeName == diskNode("blk1")
	}
	if !found {
		t.Fatalf("query-block has no blk1 on node %s: %+v", diskNode("blk1"), blocks)
	}
	memDevs := func() string {
		var raw json.RawMessage
		if err := g.Monitor().Execute(ctx, "query-memory-devices", nil, &raw); err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	if m := memDevs(); !strings.Contains(m, `"id": "dimm1"`) && !strings.Contains(m, `"id":"dimm1"`) {
		t.Fatalf("query-memory-devices: %s", m)
	}
	if _, err := os.Stat(dimmFile(g.Paths(), "dimm1")); err != nil {
		t.Fatalf("the DIMM's file: %v", err)
	}
	for _, s := range devs {
		if err := g.DetachDevice(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		waitDeletedWithin(t, g, s.ID, 120*time.Second) // the guest ejects
		if err := g.ReleaseDevice(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if m := memDevs(); strings.Contains(m, "dimm1") {
		t.Fatalf("query-memory-devices after the detach: %s", m)
	}
	// QEMU frees a memory backend's RAM block after an RCU grace period,
	// so its descriptor may close a moment after object-del returns.
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := viewOf(t, g)
		if after.String() == before.String() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the detaches:\n%s\nbefore:\n%s\nopen: %v", after, before, fdTargets(g.PID()))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fdTargets(pid int) []string {
	dir := filepath.Join("/proc", fmt.Sprint(pid), "fd")
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"="+l)
	}
	return out
}
