package domains_test

import (
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// TestDeviceTargets: virsh's --live, --config and --persistent.
func TestDeviceTargets(t *testing.T) {
	tests := []struct {
		name          string
		o             domains.DeviceOptions
		active        bool
		live, persist bool
		err           string
	}{
		{"default running", domains.DeviceOptions{}, true, true, false, ""},
		{"default shut off", domains.DeviceOptions{}, false, false, true, ""},
		{"live", domains.DeviceOptions{Live: true}, true, true, false, ""},
		{"live shut off", domains.DeviceOptions{Live: true}, false, false, false, "not running"},
		{"config running", domains.DeviceOptions{Config: true}, true, false, true, ""},
		{"persistent running", domains.DeviceOptions{Persistent: true}, true, true, true, ""},
		{"persistent shut off", domains.DeviceOptions{Persistent: true}, false, false, true, ""},
		{"two flags", domains.DeviceOptions{Live: true, Config: true}, true, false, false, "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live, persist, err := tt.o.Targets(tt.active)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || live != tt.live || persist != tt.persist {
				t.Fatalf("live %v persist %v err %v; want %v %v", live, persist, err, tt.live, tt.persist)
			}
		})
	}
}

// TestDeviceSpecCheck: a spec is one entry of one list, plus kind and id.
func TestDeviceSpecCheck(t *testing.T) {
	tests := []struct {
		name string
		s    domains.DeviceSpec
		err  string
	}{
		{"disk", domains.DeviceSpec{Kind: domains.KindDisk, ID: "d1", Target: "vdb", Path: "/x.img"}, ""},
		{"nic", domains.DeviceSpec{Kind: domains.KindNIC, ID: "n1", Mode: "user"}, ""},
		{"memory", domains.DeviceSpec{Kind: domains.KindMemory, ID: "m1", SizeMiB: 256}, ""},
		{"serial", domains.DeviceSpec{Kind: domains.KindSerial, ID: "p1", Name: "org.x.0"}, ""},
		{"no kind", domains.DeviceSpec{ID: "x"}, "missing kind"},
		{"bad kind", domains.DeviceSpec{Kind: "gpu", ID: "x"}, "must be disk"},
		{"nic with path", domains.DeviceSpec{Kind: domains.KindNIC, ID: "n1", Path: "/x"}, "does not have"},
		{"odd memory", domains.DeviceSpec{Kind: domains.KindMemory, ID: "m1", SizeMiB: 100}, "multiple of 128"},
		{"long id", domains.DeviceSpec{Kind: domains.KindNIC, ID: strings.Repeat("a", 27)}, "at most 26"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Check()
			if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
}

// TestProjectionDeviceSets: live and persistent device sets apart, the
// pending detach, and both cleared or kept as the events say.
func TestProjectionDeviceSets(t *testing.T) {
	cfg := cfgNamed("alpha", uuidA, domains.Clock{Offset: domains.OffsetUTC})
	cfg.MaxMemoryMiB, cfg.MemorySlots = 1024, 2
	usb := &domains.DeviceSpec{Kind: domains.KindDisk, ID: "usb1", Target: "sdb", Path: "/u.img", Format: "raw", Bus: domains.BusUSB, USBPort: 1}
	dimm := &domains.DeviceSpec{Kind: domains.KindMemory, ID: "dimm1", SizeMiB: 256}
	p := domains.NewProjection()
	mustApply(t, p,
		ev(1, uuidA, 1, domains.Defined{Config: cfg}),
		ev(2, uuidA, 2, domains.Started{Reason: domains.StartBooted, PID: 1}),
		ev(3, uuidA, 3, domains.DeviceAttached{Live: true, Spec: usb}),
		ev(4, uuidA, 4, domains.DeviceAttached{Live: true, Persist: true, Spec: dimm}),
		ev(5, uuidA, 5, domains.DeviceDetachRequested{ID: "usb1"}),
	)
	d, _ := p.Get(uuidA)
	if _, ok := d.Config.FindDevice("usb1"); ok {
		t.Fatal("a live-only attach reached the persistent config")
	}
	if _, ok := d.Config.FindDevice("dimm1"); !ok {
		t.Fatal("a persistent attach is not in the config")
	}
	got := map[string]string{}
	for _, s := range d.Devices() {
		got[s.ID] = s.State
	}
	if got["usb1"] != domains.DeviceStateDetachPending || got["dimm1"] != domains.DeviceStateAttached {
		t.Fatalf("device set %v", got)
	}
	mustApply(t, p,
		ev(6, uuidA, 6, domains.DeviceDetached{ID: "usb1", Live: true}),
		ev(7, uuidA, 7, domains.DeviceDetachRequested{ID: "dimm1", Persist: true}),
		ev(8, uuidA, 8, domains.DeviceDetachFailed{ID: "dimm1", Error: "timeout"}),
	)
	d, _ = p.Get(uuidA)
	if _, ok := d.LiveConfig().FindDevice("usb1"); ok || len(d.Pending) != 0 {
		t.Fatalf("usb1 still live, or pending %v", d.Pending)
	}
	if _, ok := d.Config.FindDevice("dimm1"); ok {
		t.Fatal("--persistent detach left dimm1 in the config")
	}
	if _, ok := d.LiveConfig().FindDevice("dimm1"); !ok {
		t.Fatal("a failed detach removed dimm1 from the running QEMU's set")
	}
	mustApply(t, p, ev(9, uuidA, 9, domains.Stopped{Reason: domains.StopDestroyed}))
	if d, _ = p.Get(uuidA); d.Running != nil || d.Devices() != nil {
		t.Fatalf("shut off with a live device set: %+v", d.Running)
	}
}

// TestDeviceConfigBounds: memory beyond max_memory_mib or the slots, and
// duplicate ids across lists, are config errors.
func TestDeviceConfigBounds(t *testing.T) {
	base := cfgNamed("alpha", uuidA, domains.Clock{Offset: domains.OffsetUTC})
	base.MaxMemoryMiB, base.MemorySlots = 512, 1
	tests := []struct {
		name string
		edit func(*domains.Config)
		err  string
	}{
		{"fits", func(c *domains.Config) { c.DIMMs = []domains.DIMM{{ID: "m1", SizeMiB: 256}} }, ""},
		{"beyond max", func(c *domains.Config) { c.DIMMs = []domains.DIMM{{ID: "m1", SizeMiB: 384}} }, "beyond max_memory_mib"},
		{"slots", func(c *domains.Config) {
			c.DIMMs = []domains.DIMM{{ID: "m1", SizeMiB: 128}, {ID: "m2", SizeMiB: 128}}
		}, "memory slots"},
		{"no maxmem", func(c *domains.Config) { c.MaxMemoryMiB = 0 }, "needs both"},
		{"dup id", func(c *domains.Config) {
			c.NICs = []domains.NIC{{ID: "x1"}}
			c.Ports = []domains.Port{{ID: "x1"}}
		}, "unique device id"},
		{"usb ports", func(c *domains.Config) {
			for i := range 5 {
				c.Disks = append(c.Disks, domains.Disk{Target: "sd" + string(rune('b'+i)), Path: "/u.img", Bus: domains.BusUSB})
			}
		}, "USB 2 ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base.Clone()
			tt.edit(&c)
			err := c.Normalize().Validate()
			if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
}
