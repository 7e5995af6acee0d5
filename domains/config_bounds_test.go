package domains_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Every config field is bounded, names never parse as UUIDs, and a config
// the machine type cannot run is refused at define; errors quote bounded
// prefixes of what they name (issue 7, defects 2, 3 and 11).
func TestValidateBoundsAndMachineLimits(t *testing.T) {
	disks := func(bus string, n int, ro bool) []domains.Disk {
		var out []domains.Disk
		for i := range n {
			out = append(out, domains.Disk{Target: fmt.Sprintf("d%d", i), Path: "/x", Bus: bus, ReadOnly: ro})
		}
		return out
	}
	bigDevices := func() []domains.Device {
		var out []domains.Device
		for i := range 64 {
			props := map[string]string{}
			for j := range 64 {
				props[fmt.Sprintf("p%d", j)] = strings.Repeat("v", 256)
			}
			out = append(out, domains.Device{ID: fmt.Sprintf("dev%d", i), Driver: "x", Props: props})
		}
		return out
	}
	refused := map[string]func(*domains.Config){
		"name is a uuid":      func(c *domains.Config) { c.Name = uuid.NewString() },
		"name is a bare uuid": func(c *domains.Config) { c.Name = strings.ReplaceAll(uuid.NewString(), "-", "") },
		"path over PATH_MAX": func(c *domains.Config) {
			c.Disks = []domains.Disk{{Target: "vda", Path: "/" + strings.Repeat("<", domains.MaxPath)}}
		},
		"65 props":              func(c *domains.Config) { c.Devices = []domains.Device{{ID: "d", Driver: "x", Props: manyProps(65)}} },
		"whole config too big":  func(c *domains.Config) { c.Devices = bigDevices() },
		"unknown machine":       func(c *domains.Config) { c.Machine = "microvm" },
		"machine with options":  func(c *domains.Config) { c.Machine = "pc,accel=kvm" },
		"256 vcpus on pc":       func(c *domains.Config) { c.VCPUs = 256 },
		"1024 vcpus on pc":      func(c *domains.Config) { c.VCPUs = 1024 },
		"256 vcpus on q35":      func(c *domains.Config) { c.Machine, c.VCPUs = "q35", 256 },
		"ram beyond pc":         func(c *domains.Config) { c.MemoryMiB = 1033217 },
		"ram beyond q35":        func(c *domains.Config) { c.Machine, c.MemoryMiB = "pc-q35-7.2", 1001473 },
		"read-only ide":         func(c *domains.Config) { c.Disks = disks("ide", 1, true) },
		"read-only sata by tgt": func(c *domains.Config) { c.Disks = []domains.Disk{{Target: "sda", Path: "/x", ReadOnly: true}} },
		"5 ide disks on pc":     func(c *domains.Config) { c.Disks = disks("ide", 5, false) },
		"7 sata disks on pc":    func(c *domains.Config) { c.Disks = disks("sata", 7, false) },
		"7 ide+sata on q35": func(c *domains.Config) {
			c.Machine, c.Disks = "q35", append(disks("ide", 4, false), disks("sata", 3, false)...)
			for i := range c.Disks {
				c.Disks[i].Target = fmt.Sprintf("d%d", i)
			}
		},
	}
	for name, edit := range refused {
		t.Run(name, func(t *testing.T) {
			c := minimalConfig()
			edit(&c)
			err := c.Validate()
			if !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("Validate: %v, want invalid", err)
			}
			if len(err.Error()) > 4096 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
		})
	}
	accepted := map[string]func(*domains.Config){
		"path of PATH_MAX-1": func(c *domains.Config) {
			c.Disks = []domains.Disk{{Target: "vda", Path: "/" + strings.Repeat("a", domains.MaxPath-1)}}
		},
		"255 vcpus on q35": func(c *domains.Config) { c.Machine, c.VCPUs = "q35", 255 },
		"pc ram limit":     func(c *domains.Config) { c.MemoryMiB = 1033216 },
		"q35 ram limit":    func(c *domains.Config) { c.Machine, c.MemoryMiB = "q35", 1001472 },
		"versioned pc":     func(c *domains.Config) { c.Machine = "pc-i440fx-2.0" },
		"q35 4.0.1":        func(c *domains.Config) { c.Machine = "pc-q35-4.0.1" },
		"4 ide on pc":      func(c *domains.Config) { c.Disks = disks("ide", 4, false) },
		"6 sata on q35":    func(c *domains.Config) { c.Machine, c.Disks = "q35", disks("sata", 6, false) },
		"read-only virtio": func(c *domains.Config) { c.Disks = disks("virtio", 3, true) },
		"64 props":         func(c *domains.Config) { c.Devices = []domains.Device{{ID: "d", Driver: "x", Props: manyProps(64)}} },
	}
	for name, edit := range accepted {
		t.Run(name, func(t *testing.T) {
			c := minimalConfig()
			edit(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func manyProps(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("p%d", i)] = "1"
	}
	return m
}

// Errors name what they refuse by a bounded prefix, whatever its size.
func TestValidateQuotesBounded(t *testing.T) {
	c := minimalConfig()
	huge := strings.Repeat("\x01", 300000)
	c.Name = huge
	c.Machine = huge
	c.Disks = []domains.Disk{{Target: huge, Path: huge, Format: huge, Bus: huge}}
	c.NICs = []domains.NIC{{ID: huge, Model: huge, MAC: huge, Mode: huge}}
	c.Devices = []domains.Device{{ID: huge, Driver: "x"}}
	c.Clock = domains.Clock{Offset: huge}
	err := c.Validate()
	if err == nil || len(err.Error()) > 8192 {
		t.Fatalf("error of %d bytes", len(err.Error()))
	}
}

// An older log may hold a domain named with another's UUID: a lookup by
// that UUID finds the domain the UUID belongs to, not the impostor.
func TestLookupPrefersUUID(t *testing.T) {
	p := domains.NewProjection()
	real := cfgNamed("web1", uuid.New(), domains.Clock{Offset: domains.OffsetUTC})
	impostor := cfgNamed(real.UUID.String(), uuid.New(), domains.Clock{Offset: domains.OffsetUTC}) // Apply does not validate
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range []domains.Config{real, impostor} {
		e := domains.NewEvent(c.UUID, t0, "", "h", domains.Defined{Config: c.Normalize()})
		e.Seq, e.Version = uint64(i+1), 1
		if err := p.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := p.Lookup(real.UUID.String()); !ok || d.Config.Name != "web1" {
		t.Fatalf("lookup by UUID found %q", d.Config.Name)
	}
	if d, ok := p.Lookup(impostor.UUID.String()); !ok || d.Config.UUID != impostor.UUID {
		t.Fatalf("the impostor by its own UUID: %+v %v", d.Config, ok)
	}
}
