package domains_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func TestValidateAccepts(t *testing.T) {
	cases := map[string]func(*domains.Config){
		"minimal":            nil,
		"minimal normalized": func(c *domains.Config) { *c = c.Normalize() },
		"63-char name":       func(c *domains.Config) { c.Name = strings.Repeat("a", 63) },
		"one-char name":      func(c *domains.Config) { c.Name = "x" },
		"digits first":       func(c *domains.Config) { c.Name = "0day_box-2" },
		"max memory":         func(c *domains.Config) { c.MemoryMiB = domains.MaxMemoryMiB },
		"max vcpus":          func(c *domains.Config) { c.VCPUs = domains.MaxVCPUs },
		"localtime":          func(c *domains.Config) { c.Clock = domains.Clock{Offset: domains.OffsetLocaltime} },
		"variable no basis":  func(c *domains.Config) { c.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: 5} },
		"variable +100 years": func(c *domains.Config) {
			c.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100 * 366 * 86400}
		},
		"variable -100 years": func(c *domains.Config) {
			c.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: -100 * 366 * 86400, Basis: domains.BasisLocaltime}
		},
		"disk defaults":   func(c *domains.Config) { c.Disks = []domains.Disk{{Target: "vda", Path: "/x"}} },
		"nic without mac": func(c *domains.Config) { c.NICs = []domains.NIC{{ID: "n0"}} },
		"device no props": func(c *domains.Config) { c.Devices = []domains.Device{{ID: "d0", Driver: "pvpanic"}} },
		"prop value chars": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "d0", Driver: "x", Props: map[string]string{"k": "a-b_c.d:e/f@g+h"}}}
		},
		"empty prop value": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "d0", Driver: "x", Props: map[string]string{"k": ""}}}
		},
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			c := minimalConfig()
			if mut != nil {
				mut(&c)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
	if err := fullConfig().Validate(); err != nil {
		t.Fatalf("full config: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	name := func(n string) func(*domains.Config) { return func(c *domains.Config) { c.Name = n } }
	disk := func(d domains.Disk) func(*domains.Config) {
		return func(c *domains.Config) { c.Disks = append(c.Disks, d) }
	}
	path := func(p string) func(*domains.Config) { return disk(domains.Disk{Target: "vdz", Path: p}) }
	nic := func(n domains.NIC) func(*domains.Config) {
		return func(c *domains.Config) { c.NICs = append(c.NICs, n) }
	}
	mac := func(m string) func(*domains.Config) { return nic(domains.NIC{ID: "net9", MAC: m}) }
	prop := func(k, v string) func(*domains.Config) {
		return func(c *domains.Config) {
			c.Devices = append(c.Devices, domains.Device{ID: "evil", Driver: "virtio-rng-pci", Props: map[string]string{k: v}})
		}
	}
	clock := func(k domains.Clock) func(*domains.Config) { return func(c *domains.Config) { c.Clock = k } }
	cases := []struct {
		name string
		mut  func(*domains.Config)
		want string // a substring of the message
	}{
		{"zero memory", func(c *domains.Config) { c.MemoryMiB = 0 }, "memory_mib"},
		{"too much memory", func(c *domains.Config) { c.MemoryMiB = domains.MaxMemoryMiB + 1 }, "memory_mib"},
		{"zero vcpus", func(c *domains.Config) { c.VCPUs = 0 }, "vcpus"},
		{"too many vcpus", func(c *domains.Config) { c.VCPUs = domains.MaxVCPUs + 1 }, "vcpus"},
		{"nil uuid", func(c *domains.Config) { c.UUID = uuid.Nil }, "uuid"},
		{"name with dot", name("a.b"), "name"},
		{"name with space", name("a b"), "name"},
		{"name star", name("*"), "name"},
		{"name gt", name(">"), "name"},
		{"name empty", name(""), "name"},
		{"name 64 chars", name(strings.Repeat("a", 64)), "name"},
		{"name path", name("../x"), "name"},
		{"name slash", name("a/b"), "name"},
		{"name unicode", name("dømain"), "name"},
		{"name cjk", name("日本"), "name"},
		{"name leading dash", name("-x"), "name"},
		{"name leading underscore", name("_x"), "name"},
		{"name tab", name("a\tb"), "name"},
		{"name newline", name("a\n"), "name"},
		{"name nul", name("a\x00"), "name"},
		{"name dollar", name("$SYS"), "name"},
		{"bad machine", func(c *domains.Config) { c.Machine = "PC Q35" }, "machine"},
		{"machine option", func(c *domains.Config) { c.Machine = "pc,accel=tcg" }, "machine"},
		{"unknown clock offset", clock(domains.Clock{Offset: "sundial"}), "clock.offset"},
		{"empty clock offset", clock(domains.Clock{}), "clock.offset"},
		{"utc with adjustment", clock(domains.Clock{Offset: domains.OffsetUTC, Adjustment: 60}), "clock"},
		{"utc with basis", clock(domains.Clock{Offset: domains.OffsetUTC, Basis: domains.BasisUTC}), "clock"},
		{"localtime with adjustment", clock(domains.Clock{Offset: domains.OffsetLocaltime, Adjustment: -60}), "clock"},
		{"bad basis", clock(domains.Clock{Offset: domains.OffsetVariable, Basis: "gmt"}), "clock.basis"},
		{"adjustment out of range", clock(domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100*366*86400 + 1}), "clock.adjustment"},
		{"adjustment out of range low", clock(domains.Clock{Offset: domains.OffsetVariable, Adjustment: -1 << 62}), "clock.adjustment"},
		{"duplicate disk target", disk(domains.Disk{Target: "vda", Path: "/other.img"}), "duplicate"},
		{"relative disk path", path("disk.img"), "path"},
		{"dot-dot disk path", path("../x"), "path"},
		{"empty disk path", path(""), "path"},
		{"comma in path", path("/var/lib/a,format=qcow2"), "path"},
		{"newline in path", path("/a\nb"), "path"},
		{"nul in path", path("/a\x00b"), "path"},
		{"carriage return in path", path("/a\rb"), "path"},
		{"escape in path", path("/a\x1bb"), "path"},
		{"bad disk target", disk(domains.Disk{Target: "vd a", Path: "/x"}), "target"},
		{"disk target digit", disk(domains.Disk{Target: "1vd", Path: "/x"}), "target"},
		{"bad disk format", disk(domains.Disk{Target: "vdz", Path: "/x", Format: "vmdk"}), "format"},
		{"bad disk bus", disk(domains.Disk{Target: "vdz", Path: "/x", Bus: "scsi"}), "bus"},
		{"mac five octets", mac("52:54:00:12:34"), "mac"},
		{"mac dashes", mac("52-54-00-12-34-56"), "mac"},
		{"mac upper case", mac("52:54:00:AB:CD:EF"), "mac"},
		{"mac not hex", mac("zz:54:00:12:34:56"), "mac"},
		{"mac option", mac("52:54:00:12:34:56,id=x"), "mac"},
		{"nic id taken by a disk", nic(domains.NIC{ID: "vda"}), "nics[1].id"},
		{"duplicate nic id", nic(domains.NIC{ID: "net0"}), "nics[1].id"},
		{"bad nic mode", nic(domains.NIC{ID: "net9", Mode: "bridge"}), "mode"},
		{"prop value with comma", prop("max-bytes", "1024,id=evil2"), "prop"},
		{"prop value with equals", prop("max-bytes", "x=y"), "prop"},
		{"prop value with space", prop("max-bytes", "1 2"), "prop"},
		{"prop value with newline", prop("max-bytes", "1\n2"), "prop"},
		{"prop key id", prop("id", "other"), "prop"},
		{"prop key driver", prop("driver", "e1000"), "prop"},
		{"prop key with equals", prop("a=b", "1"), "prop"},
		{"prop key with comma", prop("a,b", "1"), "prop"},
		{"prop key empty", prop("", "1"), "prop"},
		{"prop value too long", prop("k", strings.Repeat("a", 257)), "prop"},
		{"device bad id", func(c *domains.Config) { c.Devices = append(c.Devices, domains.Device{ID: "0x", Driver: "pvpanic"}) }, "devices[1]"},
		{"device bad driver", func(c *domains.Config) {
			c.Devices = append(c.Devices, domains.Device{ID: "p0", Driver: "pvpanic,id=x"})
		}, "driver"},
		{"duplicate device id", func(c *domains.Config) { c.Devices = append(c.Devices, domains.Device{ID: "rng0", Driver: "pvpanic"}) }, "duplicate"},
		{"device id taken by nic", func(c *domains.Config) { c.Devices = append(c.Devices, domains.Device{ID: "net0", Driver: "pvpanic"}) }, "duplicate"},
		{"too many disks", func(c *domains.Config) {
			c.Disks = nil
			for i := 0; i < 65; i++ {
				c.Disks = append(c.Disks, domains.Disk{Target: fmt.Sprintf("d%d", i), Path: "/x"})
			}
		}, "too many"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fullConfig()
			tc.mut(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			if !errors.Is(err, domains.ErrInvalid) || domains.CodeOf(err) != domains.CodeInvalid {
				t.Errorf("error %q is not CodeInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	c := fullConfig()
	c.Name, c.MemoryMiB, c.VCPUs = "a.b", 0, 0
	c.NICs[0].MAC = "bad"
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"name", "memory_mib", "vcpus", "mac"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"web": true, "a-b_c9": true, "a.b": false, "": false, "*": false, ">": false, "a b": false} {
		if got := domains.ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v", s, got)
		}
	}
}

func TestDeviceValidate(t *testing.T) {
	ok := domains.Device{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []domains.Device{
		{ID: "", Driver: "x"},
		{ID: "rng0", Driver: ""},
		{ID: "rng0", Driver: "x", Props: map[string]string{"addr": "0x5,multifunction=on"}},
		{ID: "rng0", Driver: "x", Props: map[string]string{"k": "v", "id": "rng1"}},
	} {
		if err := d.Validate(); err == nil {
			t.Errorf("%+v accepted", d)
		}
	}
}

func TestNormalize(t *testing.T) {
	in := domains.Config{
		Name: "n", UUID: uuidA, MemoryMiB: 1, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 9},
		Disks: []domains.Disk{{Target: "vda", Path: "/a"}, {Target: "vdb", Path: "/b", Format: "qcow2"}},
	}
	before, _ := json.Marshal(in)
	got := in.Normalize()
	if got.Machine != "pc" || got.Clock.Basis != domains.BasisUTC || got.Clock.Adjustment != 9 ||
		got.Disks[0].Format != "raw" || got.Disks[1].Format != "qcow2" {
		t.Fatalf("Normalize = %+v", got)
	}
	if after, _ := json.Marshal(in); string(after) != string(before) {
		t.Fatalf("Normalize changed its receiver's slices:\n%s\n%s", before, after)
	}
	if again := got.Normalize(); !reflect.DeepEqual(again, got) {
		t.Errorf("Normalize is not idempotent: %+v", again)
	}
	if c := (domains.Config{}).Normalize(); c.Clock.Offset != domains.OffsetUTC || c.Clock.Basis != "" {
		t.Errorf("empty clock normalizes to %+v, want utc without basis", c.Clock)
	}
	if c := (domains.Config{Clock: domains.Clock{Offset: domains.OffsetLocaltime}}).Normalize(); c.Clock.Basis != "" {
		t.Errorf("localtime got basis %q", c.Clock.Basis)
	}
	f := fullConfig()
	if n := f.Normalize(); !reflect.DeepEqual(n, f) {
		t.Errorf("Normalize changed an already normalized config: %+v", n)
	}
}

func TestClone(t *testing.T) {
	orig := fullConfig()
	want, _ := json.Marshal(orig)
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone differs:\n%+v\n%+v", c, orig)
	}
	c.Disks[0].Path = "/elsewhere"
	c.Disks = append(c.Disks[:1], domains.Disk{Target: "vdq", Path: "/q"})
	c.NICs[0].MAC = "52:54:00:00:00:00"
	c.Serial.Log = false
	c.Devices[0].Props["max-bytes"] = "1"
	c.Devices[0].Props["new"] = "x"
	c.Devices[0].ID = "other"
	c.Devices = append(c.Devices, domains.Device{ID: "more", Driver: "x"})
	if got, _ := json.Marshal(orig); string(got) != string(want) {
		t.Fatalf("mutating the clone changed the original:\n%s\n%s", want, got)
	}
	// Appending to a clone built from a slice with spare capacity must not
	// write into the original's backing array either.
	base := fullConfig()
	base.Disks = append(make([]domains.Disk, 0, 8), base.Disks...)
	cl := base.Clone()
	cl.Disks = append(cl.Disks, domains.Disk{Target: "vdx", Path: "/x"})
	if got := base.Disks[:cap(base.Disks)][2]; got.Target != "" {
		t.Fatalf("clone shares the backing array: %+v", got)
	}
	if c := (domains.Config{Disks: []domains.Disk{}, Devices: []domains.Device{}}).Clone(); c.Disks != nil || c.Devices != nil || c.Serial != nil {
		t.Errorf("empty clone = %+v", c)
	}
}
