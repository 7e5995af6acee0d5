package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	goldenNow  = time.Date(2026, 11, 21, 5, 43, 17, 0, time.FixedZone("CET", 3600))
	goldenUUID = uuid.MustParse("6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f")
)

func baseConfig() domains.Config {
	return domains.Config{Name: "demo", UUID: goldenUUID, MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC}}
}

func TestCommandLineGolden(t *testing.T) {
	paths := PathsFor("/run/vmledger", goldenUUID)
	tests := []struct {
		name  string
		accel string
		base  int64
		edit  func(*domains.Config)
		paths *Paths
	}{
		{name: "utc", accel: AccelKVM},
		{name: "tcg", accel: AccelTCG},
		{name: "localtime", accel: AccelKVM, base: 3600, edit: func(c *domains.Config) {
			c.Clock = domains.Clock{Offset: domains.OffsetLocaltime}
		}},
		{name: "variable", accel: AccelKVM, base: 86400 + 3600, edit: func(c *domains.Config) {
			c.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: 86400, Basis: domains.BasisLocaltime}
		}},
		{name: "variable-negative", accel: AccelKVM, base: -1000000, edit: func(c *domains.Config) {
			c.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: -1000000}
		}},
		{name: "q35", accel: AccelKVM, edit: func(c *domains.Config) {
			c.Machine, c.VCPUs, c.MemoryMiB = "q35", 4, 2048
			c.Disks = []domains.Disk{
				{Target: "sda", Path: "/var/lib/vm/root.qcow2", Format: "qcow2", Boot: true},
				{Target: "hdb", Path: "/var/lib/vm/data.img", Bus: "ide"},
			}
		}},
		{name: "disks", accel: AccelKVM, edit: func(c *domains.Config) {
			c.Disks = []domains.Disk{
				{Target: "vda", Path: "/var/lib/vm/root.qcow2", Format: "qcow2", Boot: true},
				{Target: "vdb", Path: "/var/lib/vm/ro.img", ReadOnly: true},
				{Target: "hda", Path: "/var/lib/vm/a.img"},
				{Target: "hdb", Path: "/var/lib/vm/b.img", Format: "raw", Bus: "ide"},
				{Target: "hdc", Path: "/var/lib/vm/c.img", Boot: true},
				{Target: "sda", Path: "/var/lib/vm/s.qcow2", Format: "qcow2", Bus: "sata"},
			}
		}},
		{name: "nics", accel: AccelKVM, edit: func(c *domains.Config) {
			c.NICs = []domains.NIC{
				{ID: "net0"},
				{ID: "net1", Model: "e1000", MAC: "52:54:00:12:34:56", Mode: "user"},
				{ID: "net2", Mode: "none"},
			}
		}},
		{name: "devices", accel: AccelKVM, edit: func(c *domains.Config) {
			c.Serial = &domains.Serial{Log: true}
			c.Devices = []domains.Device{
				{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024", "period": "1000"}},
				{ID: "bal0", Driver: "virtio-balloon-pci"},
			}
		}},
		{name: "hotplugged", accel: AccelTCG, edit: func(c *domains.Config) {
			// Devices attached live and then persisted (docs/qemu.md,
			// "Hotplug"): the names hotplug.go creates and releases.
			c.MaxMemoryMiB, c.MemorySlots = 1024, 4
			c.Disks = []domains.Disk{
				{Target: "vda", Path: "/var/lib/vm/root.img", Format: "raw"},
				{ID: "data1", Target: "vdb", Path: "/var/lib/vm/data.qcow2", Format: "qcow2"},
				{ID: "usb1", Target: "sdb", Path: "/var/lib/vm/usb.img", Format: "raw", Bus: domains.BusUSB},
				{ID: "usb2", Target: "sdc", Path: "/var/lib/vm/usb2.img", Format: "raw", Bus: domains.BusUSB, ReadOnly: true},
			}
			c.NICs = []domains.NIC{{ID: "nic1", Mode: "user"}}
			c.DIMMs = []domains.DIMM{{ID: "dimm1", SizeMiB: 256}}
			c.Ports = []domains.Port{{ID: "port1", Name: "org.vmledger.0"}}
		}},
		{name: "linux", accel: AccelTCG, edit: func(c *domains.Config) {
			c.MemoryMiB = 256
			c.OS = &domains.OS{Kernel: "/boot/vmlinuz-6.1.0-57-cloud-amd64", Initrd: "/var/lib/vm/linux/initrd.gz",
				Cmdline: "console=ttyS0 quiet oops=panic rdinit=/init"}
			c.Features = []string{domains.FeatureVMCOREINFO}
		}},
		{name: "kernel-only", accel: AccelKVM, edit: func(c *domains.Config) {
			c.OS = &domains.OS{Kernel: "/boot/vmlinuz"}
		}},
		{name: "comma-dir", accel: AccelTCG, paths: ptr(PathsFor("/run/vm,ledger", goldenUUID))},
		// on_crash other than destroy: QEMU stays in guest-panicked.
		{name: "on-crash-preserve", accel: AccelKVM, edit: func(c *domains.Config) { c.OnCrash = domains.CrashPreserve }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			p := paths
			if tt.paths != nil {
				p = *tt.paths
			}
			args, err := CommandLine(domains.StartSpec{Config: cfg, ClockBase: tt.base}, p, tt.accel, goldenNow)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(args, "\n") + "\n"
			file := filepath.Join("testdata", tt.name+".args")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("command line differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

func TestCommandLineErrors(t *testing.T) {
	paths := PathsFor("/run/vmledger", goldenUUID)
	long := PathsFor("/"+strings.Repeat("x", 60), goldenUUID)
	tests := []struct {
		name    string
		accel   string
		base    int64
		edit    func(*domains.Config)
		paths   Paths
		want    string
		invalid bool
	}{
		{name: "bad accel", accel: "xen", want: `accel "xen"`},
		{name: "invalid config", edit: func(c *domains.Config) { c.MemoryMiB = 0 }, want: "memory_mib", invalid: true},
		{name: "control char in run dir", paths: PathsFor("/run/a\nb", goldenUUID), want: "control characters"},
		{name: "relative run dir", paths: PathsFor("run", goldenUUID), want: "absolute"},
		{name: "socket path too long", paths: long, want: "socket path"},
		{name: "utc with base", base: 5, want: "base of a utc clock is 0"},
		{name: "read-only ide", edit: func(c *domains.Config) {
			c.Disks = []domains.Disk{{Target: "hda", Path: "/a.img", ReadOnly: true}}
		}, want: "read-only disks need bus virtio", invalid: true}, // refused at define (domains/machine.go)
		{name: "too many ide", edit: func(c *domains.Config) {
			for _, n := range []string{"hda", "hdb", "hdc", "hdd", "hde"} {
				c.Disks = append(c.Disks, domains.Disk{Target: n, Path: "/" + n})
			}
		}, want: "machine pc has 4 IDE ports", invalid: true},
		{name: "comma in kernel", edit: func(c *domains.Config) {
			c.OS = &domains.OS{Kernel: "/boot/vmlinuz,initrd=/etc/shadow"}
		}, want: "os.kernel", invalid: true},
		{name: "newline in cmdline", edit: func(c *domains.Config) {
			c.OS = &domains.OS{Kernel: "/k", Cmdline: "quiet\n-device"}
		}, want: "os.cmdline", invalid: true},
		{name: "unknown feature", edit: func(c *domains.Config) { c.Features = []string{"vmcore"} }, want: "unknown", invalid: true},
		{name: "nic model with comma", edit: func(c *domains.Config) {
			c.NICs = []domains.NIC{{ID: "n0", Model: "e1000,romfile=/etc/shadow"}}
		}, want: "not a QEMU device name", invalid: true}, // refused at define since the review
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			p := paths
			if tt.paths.Dir != "" {
				p = tt.paths
			}
			accel := tt.accel
			if accel == "" {
				accel = AccelKVM
			}
			_, err := CommandLine(domains.StartSpec{Config: cfg, ClockBase: tt.base}, p, accel, goldenNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if got := errors.Is(err, domains.ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalid) = %v, want %v", got, tt.invalid)
			}
		})
	}
}

// TestRTCBase pins the arithmetic the clock seed is about: the variable
// base is UTC now plus the base offset, whatever the host's zone.
func TestRTCBase(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 30, 0, 0, time.FixedZone("X", 5*3600))
	tests := []struct {
		clock domains.Clock
		base  int64
		want  string
	}{
		{domains.Clock{Offset: domains.OffsetUTC}, 0, "base=utc"},
		{domains.Clock{Offset: domains.OffsetLocaltime}, 5 * 3600, "base=localtime"},
		{domains.Clock{Offset: domains.OffsetVariable}, 0, "base=2025-12-31T19:30:00"},
		{domains.Clock{Offset: domains.OffsetVariable}, 3600 + 59, "base=2025-12-31T20:30:59"},
		{domains.Clock{Offset: domains.OffsetVariable}, -86400, "base=2025-12-30T19:30:00"},
	}
	for _, tt := range tests {
		got, err := rtcOption(tt.clock, tt.base, now)
		if err != nil || got != tt.want {
			t.Errorf("rtcOption(%+v, %d) = %q, %v; want %q", tt.clock, tt.base, got, err, tt.want)
		}
	}
}

func TestResolveAccel(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-kvm")
	tests := []struct {
		want, dev, got, err string
	}{
		{want: "", dev: missing, got: AccelTCG},
		{want: AccelAuto, dev: missing, got: AccelTCG},
		{want: AccelTCG, dev: missing, got: AccelTCG},
		{want: AccelKVM, dev: missing, err: "accel kvm requested"},
		{want: "hvf", dev: missing, err: `accel "hvf"`},
	}
	for _, tt := range tests {
		got, err := resolveAccel(tt.want, tt.dev)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolveAccel(%q) = %q, %v; want error %q", tt.want, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.got {
			t.Errorf("resolveAccel(%q) = %q, %v; want %q", tt.want, got, err, tt.got)
		}
	}
}

func ptr[T any](v T) *T { return &v }
