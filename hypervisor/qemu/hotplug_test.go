package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// qemuView is what QEMU itself says it holds: block nodes, QOM objects,
// chardevs, peripherals, open descriptors, and the run directory's files.
type qemuView struct {
	nodes, objects, chardevs, peripherals, files []string
	fds                                          int
}

func viewOf(t *testing.T, g *Guest) qemuView {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	var v qemuView
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	if err := g.Monitor().Execute(ctx, "query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		v.nodes = append(v.nodes, n.NodeName)
	}
	for _, q := range []struct {
		path string
		out  *[]string
	}{{"/objects", &v.objects}, {"/chardevs", &v.chardevs}} {
		var props []struct{ Name, Type string }
		if err := g.Monitor().Execute(ctx, "qom-list", map[string]any{"path": q.path}, &props); err != nil {
			t.Fatal(err)
		}
		for _, p := range props {
			if strings.HasPrefix(p.Type, "child<") {
				*q.out = append(*q.out, p.Name)
			}
		}
		slices.Sort(*q.out)
	}
	var err error
	if v.peripherals, err = g.PeripheralIDs(ctx); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.PID()))
	if err != nil {
		t.Fatal(err)
	}
	v.fds = len(ents)
	files, _ := os.ReadDir(g.Paths().Dir)
	for _, f := range files {
		v.files = append(v.files, f.Name())
	}
	slices.Sort(v.nodes)
	return v
}

// waitDeleted waits for DEVICE_DELETED of id (QEMU also reports the
// id-less children of some devices, such as usb-storage's SCSI disk).
func waitDeleted(t *testing.T, g *Guest, id string) {
	t.Helper()
	waitDeletedWithin(t, g, id, 10*time.Second)
}

func waitDeletedWithin(t *testing.T, g *Guest, id string, within time.Duration) {
	t.Helper()
	for {
		if ev := waitEvent(t, g, domains.GuestDeviceDeleted, within); ev.Device == id {
			return
		}
	}
}

func (v qemuView) String() string {
	return fmt.Sprintf("nodes %v objects %v chardevs %v peripherals %v fds %d files %v", v.nodes, v.objects, v.chardevs, v.peripherals, v.fds, v.files)
}

// TestHotplugReleasesAsCreated (docs/qemu.md, "Hotplug"): a USB disk and
// a virtio-serial port, which QEMU unplugs without the guest, go through
// attach, device_del, DEVICE_DELETED and release many times; QEMU's block
// nodes, objects, chardevs, peripherals and descriptors and the run
// directory's files are back to where they started. An attach that fails
// half-way (device_add refused after its backend was made) leaves nothing.
func TestHotplugReleasesAsCreated(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	spec.Config.MaxMemoryMiB, spec.Config.MemorySlots = 512, 2
	g := startTest(t, d, spec)
	ctx := ctxFor(t, 5*time.Minute)
	img := filepath.Join(t.TempDir(), "usb.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	usb := domains.DeviceSpec{Kind: domains.KindDisk, ID: "usb1", Target: "sdb", Path: img, Format: "raw", Bus: domains.BusUSB, USBPort: 1}
	port := domains.DeviceSpec{Kind: domains.KindSerial, ID: "port1", Name: "org.vmledger.test"}
	// The controllers are added on first use and stay: count from there.
	for _, s := range []domains.DeviceSpec{usb, port} {
		if err := g.AttachDevice(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := g.DetachDevice(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		waitDeleted(t, g, s.ID)
		if err := g.ReleaseDevice(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	before := viewOf(t, g)
	for i := 0; i < 50; i++ {
		for _, s := range []domains.DeviceSpec{usb, port} {
			if err := g.AttachDevice(ctx, s); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if i == 0 {
				in := viewOf(t, g)
				if !slices.Contains(in.peripherals, s.ID) {
					t.Fatalf("attached %s, QEMU has %v", s.ID, in.peripherals)
				}
				if s.Kind == domains.KindDisk && !slices.Contains(in.nodes, diskNode(s.ID)) {
					t.Fatalf("attached %s, QEMU's block nodes %v", s.ID, in.nodes)
				}
			}
			if err := g.DetachDevice(ctx, s.ID); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			waitDeleted(t, g, s.ID)
			if err := g.ReleaseDevice(ctx, s); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
		}
	}
	if after := viewOf(t, g); after.String() != before.String() {
		t.Fatalf("after the cycles:\n%s\nbefore:\n%s", after, before)
	}

	// Half-way failures: the backend made, then device_add refused.
	for _, s := range []domains.DeviceSpec{
		{Kind: domains.KindMemory, ID: "dimm1", SizeMiB: 1024}, // beyond maxmem
		{Kind: domains.KindNIC, ID: "nic1", Model: "no-such-nic", Mode: "user"},
		{Kind: domains.KindDisk, ID: "bad1", Target: "vdq", Path: img, Format: "qcow2"}, // not a qcow2
	} {
		if err := g.AttachDevice(ctx, s); err == nil {
			t.Fatalf("%s: attach succeeded", s.ID)
		}
	}
	if after := viewOf(t, g); after.String() != before.String() {
		t.Fatalf("after failed attaches:\n%s\nbefore:\n%s", after, before)
	}
}
