package domains_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Device props and NIC models that would reach host files, backends or
// other devices are refused at define, not at start.
func TestConfigRefusesHostReach(t *testing.T) {
	base := func() domains.Config {
		return domains.Config{Name: "vm", UUID: uuid.New(), MemoryMiB: 16, VCPUs: 1, Clock: domains.Clock{Offset: "utc"}}
	}
	cases := map[string]func(*domains.Config){
		"loader file": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "l0", Driver: "loader", Props: map[string]string{"file": "x"}}}
		},
		"romfile": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "n1", Driver: "e1000", Props: map[string]string{"romfile": "rom"}}}
		},
		"serial on chardev": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "s1", Driver: "isa-serial", Props: map[string]string{"chardev": "serial0"}}}
		},
		"drive": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "d1", Driver: "ide-hd", Props: map[string]string{"drive": "disk0"}}}
		},
		"upper-case key": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "d1", Driver: "ide-hd", Props: map[string]string{"Drive": "disk0"}}}
		},
		"absolute value": func(c *domains.Config) {
			c.Devices = []domains.Device{{ID: "r1", Driver: "virtio-rng-pci", Props: map[string]string{"x": "/dev/mem"}}}
		},
		"nic model options":   func(c *domains.Config) { c.NICs = []domains.NIC{{ID: "n0", Model: "e1000,romfile=/etc/shadow"}} },
		"nic model uppercase": func(c *domains.Config) { c.NICs = []domains.NIC{{ID: "n0", Model: "E1000 x"}} },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			c := base()
			edit(&c)
			if err := c.Validate(); !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("Validate: %v, want invalid", err)
			}
		})
	}
	ok := base()
	ok.Devices = []domains.Device{{ID: "rng0", Driver: "virtio-rng-pci", Props: map[string]string{"max-bytes": "1024"}}}
	ok.NICs = []domains.NIC{{ID: "n0", Model: "e1000"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a harmless device was refused: %v", err)
	}
}
