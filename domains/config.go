package domains

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// Clock offsets, as in libvirt's <clock offset=...>.
const (
	OffsetUTC       = "utc"
	OffsetLocaltime = "localtime"
	OffsetVariable  = "variable"

	BasisUTC       = "utc"
	BasisLocaltime = "localtime"
)

// Config is a domain's persistent configuration. It is the projection of
// the domain's events: defined/config-updated replace it, rtc-changed and
// device events amend it.
type Config struct {
	Name      string    `json:"name"`
	UUID      uuid.UUID `json:"uuid,omitzero"` // absent: generated at define
	MemoryMiB uint64    `json:"memory_mib"`
	VCPUs     uint32    `json:"vcpus"`
	Machine   string    `json:"machine,omitempty"` // QEMU machine type; "" means pc
	Clock     Clock     `json:"clock"`
	Disks     []Disk    `json:"disks,omitempty"`
	NICs      []NIC     `json:"nics,omitempty"`
	Serial    *Serial   `json:"serial,omitempty"`
	Devices   []Device  `json:"devices,omitempty"`
	// Hot-pluggable memory and virtio-serial ports: devices.go.
	MaxMemoryMiB uint64 `json:"max_memory_mib,omitempty"` // -m maxmem; 0: no memory hotplug
	MemorySlots  uint32 `json:"memory_slots,omitempty"`   // -m slots
	DIMMs        []DIMM `json:"dimms,omitempty"`
	Ports        []Port `json:"ports,omitempty"`
	// Direct kernel boot and features: config_os.go.
	OS       *OS      `json:"os,omitempty"`
	Features []string `json:"features,omitempty"`
	// OnCrash is what a guest panic leads to (dump.go); "" is destroy.
	OnCrash string `json:"on_crash,omitempty"`
}

// Clock is the guest's RTC configuration.
type Clock struct {
	Offset     string `json:"offset"`               // utc | localtime | variable
	Adjustment int64  `json:"adjustment,omitempty"` // seconds, variable only
	Basis      string `json:"basis,omitempty"`      // utc | localtime, variable only
}

// Disk is a block device backed by a host file.
type Disk struct {
	ID       string `json:"id,omitempty"`     // device id; "" means Target (hot-plugged disks have one)
	Target   string `json:"target"`           // e.g. vda, hda; unique
	Path     string `json:"path"`             // host path to the image
	Format   string `json:"format,omitempty"` // raw | qcow2
	Bus      string `json:"bus,omitempty"`    // virtio | ide | sata | usb
	ReadOnly bool   `json:"readonly,omitempty"`
	Boot     bool   `json:"boot,omitempty"`
	// USBPort is a usb disk's port on the xHCI controller (1-4, its USB 2
	// ports); 0: the lowest free one, fixed when it is attached (a
	// restored QEMU must have each device where the saved one had it).
	USBPort int `json:"usb_port,omitempty"`
}

// NIC is a network interface.
type NIC struct {
	ID    string `json:"id"`
	Model string `json:"model,omitempty"` // virtio-net-pci, e1000
	MAC   string `json:"mac,omitempty"`
	Mode  string `json:"mode,omitempty"` // user | none
}

// Serial is the guest's first serial port, exposed on a socket.
type Serial struct {
	Log bool `json:"log,omitempty"` // keep a console log in the run directory
}

// Device is any other device, hot-pluggable by ID.
type Device struct {
	ID     string            `json:"id"`
	Driver string            `json:"driver"` // QEMU -device driver
	Props  map[string]string `json:"props,omitempty"`
}

// Limits that a config must respect. MaxMemoryMiB and MaxVCPUs are the
// most any machine type takes (machine.go has each type's limits).
const (
	MaxMemoryMiB = 1033216 // pc on QEMU 7.2, ~1009 GiB
	MaxVCPUs     = 255
	maxItems     = 64 // disks, NICs, devices; props of one device
	// MaxPath is the longest disk path: PATH_MAX (4096) counts the
	// terminating NUL.
	MaxPath = 4095
	// MaxConfigJSON bounds a config's JSON form, so that its events (and
	// replies carrying it) stay far below the bus's 1 MiB payload limit
	// even when the fields are each within their bounds.
	MaxConfigJSON = 256 << 10
)

// nameRE: a domain name must be a single safe NATS subject token and a safe
// file name: no dots, wildcards, spaces, slashes or control characters.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

var idRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

var machineRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// ValidName reports whether s is acceptable as a domain name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks the config on its own (not against other domains). The
// error lists every problem found, so a user fixes the file in one go.
func (c Config) Validate() error {
	var p []string
	add := func(f string, a ...any) { p = append(p, fmt.Sprintf(f, a...)) }
	if !nameRE.MatchString(c.Name) {
		add("name %s: must be 1-63 characters of letters, digits, '-' or '_', starting with a letter or digit (it is a NATS subject token)", Quote(c.Name))
	} else if _, err := uuid.Parse(c.Name); err == nil {
		// Domains are looked up by name or UUID: a name that reads as
		// a UUID could stand in for another domain.
		add("name %s: a name must not parse as a UUID", Quote(c.Name))
	}
	if c.UUID == uuid.Nil {
		add("uuid: must be set and not all zero")
	}
	if c.MemoryMiB == 0 || c.MemoryMiB > MaxMemoryMiB {
		add("memory_mib %d: must be between 1 and %d", c.MemoryMiB, MaxMemoryMiB)
	}
	if c.VCPUs == 0 || c.VCPUs > MaxVCPUs {
		add("vcpus %d: must be between 1 and %d", c.VCPUs, MaxVCPUs)
	}
	if lim, err := Machine(c.Machine); err != nil {
		add("%v", err)
	} else {
		p = append(p, lim.problems(c)...)
	}
	p = append(p, c.Clock.problems()...)
	p = append(p, c.OS.problems()...)
	p = append(p, onCrashProblems(c.OnCrash)...)
	if len(c.Features) > maxItems {
		add("too many features (at most %d)", maxItems)
	} else {
		p = append(p, featureProblems(c.Features)...)
	}
	if len(c.Disks) > maxItems || len(c.NICs) > maxItems || len(c.Devices) > maxItems {
		add("too many disks, nics or devices (at most %d each)", maxItems)
	}
	seen := map[string]bool{}
	for i, d := range c.Disks {
		if !idRE.MatchString(d.Target) {
			add("disks[%d].target %s: not a valid device name", i, Quote(d.Target))
		}
		if seen[d.Target] {
			add("disks[%d].target %s: duplicate", i, Quote(d.Target))
		}
		seen[d.Target] = true
		switch {
		case len(d.Path) > MaxPath:
			add("disks[%d].path %s: longer than PATH_MAX (at most %d bytes)", i, Quote(d.Path), MaxPath)
		case d.Path == "" || strings.ContainsFunc(d.Path, badPathRune) || !strings.HasPrefix(d.Path, "/"):
			add("disks[%d].path %s: must be an absolute path without commas or control characters", i, Quote(d.Path))
		}
		switch d.Format {
		case "", "raw", "qcow2":
		default:
			add("disks[%d].format %s: must be raw or qcow2", i, Quote(d.Format))
		}
		switch d.Bus {
		case "", BusVirtio, BusIDE, BusSATA, BusUSB:
		default:
			add("disks[%d].bus %s: must be virtio, ide, sata or usb", i, Quote(d.Bus))
		}
		if d.ID != "" && d.ID != d.Target {
			if !hotIDRE.MatchString(d.ID) || seen[d.ID] {
				add("disks[%d].id %s: must be a unique device id of at most %d characters", i, Quote(d.ID), maxHotID)
			}
			seen[d.ID] = true
		}
	}
	for i, n := range c.NICs {
		if !idRE.MatchString(n.ID) || seen[n.ID] {
			add("nics[%d].id %s: must be a unique device id", i, Quote(n.ID))
		}
		seen[n.ID] = true
		if n.Model != "" && !machineRE.MatchString(n.Model) {
			add("nics[%d].model %s: not a QEMU device name", i, Quote(n.Model))
		}
		if n.MAC != "" && !macRE.MatchString(n.MAC) {
			add("nics[%d].mac %s: must be lower-case aa:bb:cc:dd:ee:ff", i, Quote(n.MAC))
		}
		switch n.Mode {
		case "", "user", "none":
		default:
			add("nics[%d].mode %s: must be user or none", i, Quote(n.Mode))
		}
	}
	for i, d := range c.Devices {
		if err := d.Validate(); err != nil {
			add("devices[%d]: %v", i, err)
		}
		if seen[d.ID] {
			add("devices[%d].id %s: duplicate", i, Quote(d.ID))
		}
		seen[d.ID] = true
	}
	p = append(p, c.hotplugProblems(seen)...)
	if len(p) == 0 {
		// Only when every field is in bounds: the sum may still not be.
		if b, err := json.Marshal(c); err != nil || len(b) > MaxConfigJSON {
			add("config: %d bytes as JSON, at most %d", len(b), MaxConfigJSON)
		}
	}
	if len(p) > maxItems {
		p = append(p[:maxItems], fmt.Sprintf("and %d more problems", len(p)-maxItems))
	}
	if len(p) > 0 {
		return &Error{Code: CodeInvalid, Message: "invalid config: " + strings.Join(p, "; ")}
	}
	return nil
}

func (k Clock) problems() []string {
	var p []string
	switch k.Offset {
	case OffsetUTC, OffsetLocaltime:
		if k.Adjustment != 0 || k.Basis != "" {
			p = append(p, fmt.Sprintf("clock: adjustment and basis apply to offset %q only", OffsetVariable))
		}
	case OffsetVariable:
		switch k.Basis {
		case "", BasisUTC, BasisLocaltime:
		default:
			p = append(p, fmt.Sprintf("clock.basis %s: must be utc or localtime", Quote(k.Basis)))
		}
		// ±100 years keeps base arithmetic far from overflow.
		if k.Adjustment > 100*366*86400 || k.Adjustment < -100*366*86400 {
			p = append(p, fmt.Sprintf("clock.adjustment %d: out of range (±100 years)", k.Adjustment))
		}
	default:
		p = append(p, fmt.Sprintf("clock.offset %s: must be utc, localtime or variable", Quote(k.Offset)))
	}
	return p
}

// badPathRune: a comma would start a new QEMU option; control characters
// have no business in a path.
func badPathRune(r rune) bool { return r == ',' || r < 0x20 || r == 0x7f }

// hostProps are properties that name host files or host-side backends
// (or the device's identity): a guest config must not reach the host, nor
// another device's chardev or drive, through them.
var hostProps = map[string]bool{
	"id": true, "driver": true, "file": true, "romfile": true, "chardev": true, "drive": true,
	"netdev": true, "memdev": true, "fsdev": true, "path": true, "filename": true, "bus": true,
}

// propRE keeps device properties from smuggling extra QEMU options.
var propRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@+-]{0,256}$`)

// Validate checks one device.
func (d Device) Validate() error {
	if !idRE.MatchString(d.ID) {
		return fmt.Errorf("id %s: must start with a letter, then letters, digits, '-' or '_' (max 32)", Quote(d.ID))
	}
	if !machineRE.MatchString(d.Driver) {
		return fmt.Errorf("driver %s: not a QEMU device driver name", Quote(d.Driver))
	}
	if len(d.Props) > maxItems {
		return fmt.Errorf("%d props: at most %d", len(d.Props), maxItems)
	}
	for k, v := range d.Props {
		if !idRE.MatchString(k) || hostProps[strings.ToLower(k)] || !propRE.MatchString(v) || strings.HasPrefix(v, "/") {
			return fmt.Errorf("prop %s=%s: not allowed (no host paths, backends or ids in device props)", Quote(k), Quote(v))
		}
	}
	return nil
}

// Normalize fills defaults so that equal intentions compare equal.
func (c Config) Normalize() Config {
	c = c.Clone() // never write into the caller's slices
	if c.VCPUs == 0 {
		c.VCPUs = 1 // virsh's default, for <vcpu> left out (0 is what a program leaves unset)
	}
	if c.Machine == "" {
		c.Machine = "pc"
	}
	if c.Clock.Offset == "" {
		c.Clock.Offset = OffsetUTC
	}
	if c.Clock.Offset == OffsetVariable && c.Clock.Basis == "" {
		c.Clock.Basis = BasisUTC
	}
	for i := range c.Disks {
		if c.Disks[i].Format == "" {
			c.Disks[i].Format = "raw"
		}
	}
	for i := range c.Devices {
		if len(c.Devices[i].Props) == 0 {
			// "props": {} and no props are the same device (found by
			// FuzzDecodeConfig: JSON's omitempty drops the empty map).
			c.Devices[i].Props = nil
		}
	}
	return c
}

// Clone returns a deep copy, so projections never share slices with callers.
func (c Config) Clone() Config {
	c.Disks = append([]Disk(nil), c.Disks...)
	c.cloneOS()
	c.NICs = append([]NIC(nil), c.NICs...)
	if c.Serial != nil {
		s := *c.Serial
		c.Serial = &s
	}
	devs := make([]Device, len(c.Devices))
	for i, d := range c.Devices {
		devs[i] = d
		if d.Props != nil {
			devs[i].Props = make(map[string]string, len(d.Props))
			for k, v := range d.Props {
				devs[i].Props[k] = v
			}
		}
	}
	if len(devs) == 0 {
		devs = nil
	}
	c.Devices = devs
	if len(c.Disks) == 0 {
		c.Disks = nil
	}
	if len(c.NICs) == 0 {
		c.NICs = nil
	}
	c.DIMMs = append([]DIMM(nil), c.DIMMs...)
	c.Ports = append([]Port(nil), c.Ports...)
	if len(c.DIMMs) == 0 {
		c.DIMMs = nil
	}
	if len(c.Ports) == 0 {
		c.Ports = nil
	}
	return c
}
