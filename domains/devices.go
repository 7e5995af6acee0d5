package domains

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
)

// Device kinds a spec (attach-device) names.
const (
	KindDisk   = "disk"
	KindNIC    = "nic"
	KindSerial = "serial" // a virtio-serial port
	KindMemory = "memory" // a pc-dimm
)

// Device states in the live device set.
const (
	DeviceStateAttached      = "attached"
	DeviceStateDetachPending = "detach-pending"
)

// maxHotID bounds the id of a device with host-side parts: QEMU's block
// node names (x-<id>-f) take at most 31 bytes.
const maxHotID = 26

var hotIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,25}$`)

// dimmAlign: Linux onlines memory in 128 MiB blocks on x86; a DIMM of
// another size leaves part of it unused and cannot be offlined whole.
const dimmAlign = 128

// DIMM is a pc-dimm backed by a memory-backend-file in the run directory.
type DIMM struct {
	ID      string `json:"id"`
	SizeMiB uint64 `json:"size_mib"`
}

// Port is a virtio-serial port; its host side is a unix socket in the run
// directory.
type Port struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"` // the guest's /dev/virtio-ports/<name>
}

var portNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// DeviceSpec is one device as attach-device takes it: an entry of one of
// the config's lists, in that list's own fields, plus its kind and id. A
// spec without kind is a generic device (Device: driver and props), the
// shape of device-attached before kinds existed.
type DeviceSpec struct {
	Kind string `json:"kind,omitempty"`
	ID   string `json:"id"`
	// generic device
	Driver string            `json:"driver,omitempty"`
	Props  map[string]string `json:"props,omitempty"`
	// disk
	Target   string `json:"target,omitempty"`
	Path     string `json:"path,omitempty"`
	Format   string `json:"format,omitempty"`
	Bus      string `json:"bus,omitempty"`
	ReadOnly bool   `json:"readonly,omitempty"`
	USBPort  int    `json:"usb_port,omitempty"`
	// nic
	Model string `json:"model,omitempty"`
	MAC   string `json:"mac,omitempty"`
	Mode  string `json:"mode,omitempty"`
	// serial
	Name string `json:"name,omitempty"`
	// memory
	SizeMiB uint64 `json:"size_mib,omitempty"`
}

// Disk, NIC, DIMM and Port return the entry the spec describes.
func (s DeviceSpec) Disk() Disk {
	return Disk{ID: s.ID, Target: s.Target, Path: s.Path, Format: s.Format, Bus: s.Bus, ReadOnly: s.ReadOnly, USBPort: s.USBPort}
}
func (s DeviceSpec) NIC() NIC   { return NIC{ID: s.ID, Model: s.Model, MAC: s.MAC, Mode: s.Mode} }
func (s DeviceSpec) DIMM() DIMM { return DIMM{ID: s.ID, SizeMiB: s.SizeMiB} }
func (s DeviceSpec) Port() Port { return Port{ID: s.ID, Name: s.Name} }

// specOf is the inverse of the accessors: the spec of a config entry.
func specOfDisk(d Disk) DeviceSpec {
	return DeviceSpec{Kind: KindDisk, ID: d.DeviceID(), Target: d.Target, Path: d.Path, Format: d.Format, Bus: d.Bus, ReadOnly: d.ReadOnly, USBPort: d.USBPort}
}

// DeviceID is the disk's QEMU device id: its ID, else its target.
func (d Disk) DeviceID() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Target
}

// Check validates a spec on its own: its kind, its id, and that it holds
// no field of another kind (a nic with a path is a mistake, not a nic).
func (s DeviceSpec) Check() error {
	var clean DeviceSpec
	switch s.Kind {
	case KindDisk:
		if s.ID == "" {
			return Errorf(CodeInvalid, "device: a disk needs an id")
		}
		clean = specOfDisk(s.Disk())
	case KindNIC:
		clean = specOfNIC(s.NIC())
	case KindMemory:
		clean = DeviceSpec{Kind: KindMemory, ID: s.ID, SizeMiB: s.SizeMiB}
		if s.SizeMiB == 0 || s.SizeMiB%dimmAlign != 0 {
			return Errorf(CodeInvalid, "device %s: size_mib %d: must be a positive multiple of %d", Quote(s.ID), s.SizeMiB, dimmAlign)
		}
	case KindSerial:
		clean = DeviceSpec{Kind: KindSerial, ID: s.ID, Name: s.Name}
	case "":
		return Errorf(CodeInvalid, "device: missing kind (disk, nic, serial or memory)")
	default:
		return Errorf(CodeInvalid, "device: kind %s: must be disk, nic, serial or memory", Quote(s.Kind))
	}
	if !hotIDRE.MatchString(s.ID) {
		return Errorf(CodeInvalid, "device: id %s: must start with a letter, then letters, digits, '-' or '_' (at most %d)", Quote(s.ID), maxHotID)
	}
	if !s.equal(clean) {
		return Errorf(CodeInvalid, "device %s: fields that a %s does not have (a spec is one entry of the config's %s list)", Quote(s.ID), s.Kind, listOf(s.Kind))
	}
	return nil
}

func specOfNIC(n NIC) DeviceSpec {
	return DeviceSpec{Kind: KindNIC, ID: n.ID, Model: n.Model, MAC: n.MAC, Mode: n.Mode}
}

func (s DeviceSpec) equal(o DeviceSpec) bool {
	a, b := s, o
	a.Props, b.Props = nil, nil
	return reflect.DeepEqual(a, b) && len(s.Props) == 0 && len(o.Props) == 0
}

func listOf(kind string) string {
	switch kind {
	case KindDisk:
		return "disks"
	case KindNIC:
		return "nics"
	case KindMemory:
		return "dimms"
	}
	return "ports"
}

// WithDevice returns c with the device added to its list.
func (c Config) WithDevice(s DeviceSpec) Config {
	c = c.Clone()
	switch s.Kind {
	case KindDisk:
		c.Disks = append(c.Disks, s.Disk())
	case KindNIC:
		c.NICs = append(c.NICs, s.NIC())
	case KindMemory:
		c.DIMMs = append(c.DIMMs, s.DIMM())
	case KindSerial:
		c.Ports = append(c.Ports, s.Port())
	case "":
		c.Devices = append(c.Devices, Device{ID: s.ID, Driver: s.Driver, Props: s.Props})
	}
	return c
}

// WithoutDevice returns c without the device of that id, and whether it
// had one.
func (c Config) WithoutDevice(id string) (Config, bool) {
	c = c.Clone()
	n := len(c.Disks) + len(c.NICs) + len(c.DIMMs) + len(c.Ports) + len(c.Devices)
	c.Disks = slices.DeleteFunc(c.Disks, func(d Disk) bool { return d.DeviceID() == id })
	c.NICs = slices.DeleteFunc(c.NICs, func(d NIC) bool { return d.ID == id })
	c.DIMMs = slices.DeleteFunc(c.DIMMs, func(d DIMM) bool { return d.ID == id })
	c.Ports = slices.DeleteFunc(c.Ports, func(d Port) bool { return d.ID == id })
	c.Devices = slices.DeleteFunc(c.Devices, func(d Device) bool { return d.ID == id })
	c = c.Clone() // empty lists become nil again
	return c, n != len(c.Disks)+len(c.NICs)+len(c.DIMMs)+len(c.Ports)+len(c.Devices)
}

// FindDevice returns the spec of the config's device with that id.
func (c Config) FindDevice(id string) (DeviceSpec, bool) {
	for _, s := range c.DeviceSpecs() {
		if s.ID == id {
			return s, true
		}
	}
	return DeviceSpec{}, false
}

// DeviceSpecs lists every device of the config that can be detached by
// id: disks, NICs, DIMMs, ports and generic devices.
func (c Config) DeviceSpecs() []DeviceSpec {
	var out []DeviceSpec
	for _, d := range c.Disks {
		out = append(out, specOfDisk(d))
	}
	for _, n := range c.NICs {
		out = append(out, specOfNIC(n))
	}
	for _, d := range c.DIMMs {
		out = append(out, DeviceSpec{Kind: KindMemory, ID: d.ID, SizeMiB: d.SizeMiB})
	}
	for _, p := range c.Ports {
		out = append(out, DeviceSpec{Kind: KindSerial, ID: p.ID, Name: p.Name})
	}
	for _, d := range c.Devices {
		out = append(out, DeviceSpec{ID: d.ID, Driver: d.Driver, Props: d.Props})
	}
	return out
}

// DeviceState is one device of the live device set.
type DeviceState struct {
	ID    string `json:"id"`
	Kind  string `json:"kind,omitempty"`
	State string `json:"state"` // attached | detach-pending
}

// Devices is the live device set with each device's state; nil when the
// domain is shut off.
func (d Domain) Devices() []DeviceState {
	if d.Running == nil {
		return nil
	}
	var out []DeviceState
	for _, s := range d.LiveConfig().DeviceSpecs() {
		st := DeviceStateAttached
		if slices.Contains(d.Pending, s.ID) {
			st = DeviceStateDetachPending
		}
		out = append(out, DeviceState{ID: s.ID, Kind: s.Kind, State: st})
	}
	return out
}

// LiveConfig is the config the running QEMU has: the persistent one as it
// was at start, amended by live device changes. Shut off, the persistent
// config.
func (d Domain) LiveConfig() Config {
	if d.Running != nil {
		return *d.Running
	}
	return d.Config
}

// USBPorts are the xHCI controller's USB 2 ports, which usb-storage uses.
const USBPorts = 4

// USBPortsOf assigns each usb disk of c its port: its own, else the
// lowest one free. ok is false when there are more usb disks than ports.
func (c Config) USBPortsOf() (ports map[string]int, ok bool) {
	ports = map[string]int{}
	used := map[int]bool{}
	for _, d := range c.Disks {
		if d.EffectiveBus() == BusUSB && d.USBPort != 0 {
			ports[d.DeviceID()], used[d.USBPort] = d.USBPort, true
		}
	}
	next := 1
	for _, d := range c.Disks {
		if d.EffectiveBus() != BusUSB || d.USBPort != 0 {
			continue
		}
		for used[next] {
			next++
		}
		if next > USBPorts {
			return ports, false
		}
		ports[d.DeviceID()], used[next] = next, true
	}
	return ports, true
}

// hotplugProblems checks memory hotplug, ports and that device ids are
// unique across every list (seen holds the disks' and NICs' ids).
func (c Config) hotplugProblems(seen map[string]bool) []string {
	var p []string
	add := func(f string, a ...any) { p = append(p, fmt.Sprintf(f, a...)) }
	if len(c.DIMMs) > maxItems || len(c.Ports) > maxItems {
		add("too many dimms or ports (at most %d each)", maxItems)
		return p
	}
	usbUsed := map[int]bool{}
	for i, d := range c.Disks {
		switch {
		case d.USBPort != 0 && d.EffectiveBus() != BusUSB:
			add("disks[%d].usb_port: for bus usb only", i)
		case d.USBPort < 0 || d.USBPort > USBPorts:
			add("disks[%d].usb_port %d: must be 1-%d", i, d.USBPort, USBPorts)
		case d.USBPort != 0 && usbUsed[d.USBPort]:
			add("disks[%d].usb_port %d: taken by another disk", i, d.USBPort)
		}
		usbUsed[d.USBPort] = true
	}
	if _, ok := c.USBPortsOf(); !ok {
		add("more usb disks than the xHCI controller's %d USB 2 ports", USBPorts)
	}
	total := c.MemoryMiB
	for i, d := range c.DIMMs {
		if !hotIDRE.MatchString(d.ID) || seen[d.ID] {
			add("dimms[%d].id %s: must be a unique device id of at most %d characters", i, Quote(d.ID), maxHotID)
		}
		seen[d.ID] = true
		if d.SizeMiB == 0 || d.SizeMiB%dimmAlign != 0 {
			add("dimms[%d].size_mib %d: must be a positive multiple of %d", i, d.SizeMiB, dimmAlign)
		}
		total += d.SizeMiB
	}
	if c.MaxMemoryMiB != 0 || c.MemorySlots != 0 || len(c.DIMMs) > 0 {
		switch {
		case c.MaxMemoryMiB == 0 || c.MemorySlots == 0:
			add("memory hotplug needs both max_memory_mib and memory_slots")
		case c.MaxMemoryMiB < c.MemoryMiB || c.MaxMemoryMiB > MaxMemoryMiB:
			add("max_memory_mib %d: must be between memory_mib (%d) and %d", c.MaxMemoryMiB, c.MemoryMiB, MaxMemoryMiB)
		case c.MemorySlots > 256: // QEMU's ACPI_MAX_RAM_SLOTS
			add("memory_slots %d: at most 256", c.MemorySlots)
		case uint64(len(c.DIMMs)) > uint64(c.MemorySlots):
			add("%d dimms: only %d memory slots", len(c.DIMMs), c.MemorySlots)
		case total > c.MaxMemoryMiB:
			add("memory: %d MiB with dimms, beyond max_memory_mib %d", total, c.MaxMemoryMiB)
		}
	}
	for i, pt := range c.Ports {
		if !hotIDRE.MatchString(pt.ID) || seen[pt.ID] {
			add("ports[%d].id %s: must be a unique device id of at most %d characters", i, Quote(pt.ID), maxHotID)
		}
		seen[pt.ID] = true
		if pt.Name != "" && !portNameRE.MatchString(pt.Name) {
			add("ports[%d].name %s: 1-63 letters, digits, '.', '-' or '_'", i, Quote(pt.Name))
		}
	}
	return p
}

// The folds of the device events: Live changes amend the running QEMU's
// config, Persist ones the persistent config.

func foldAttached(d *Domain, v DeviceAttached, _ Event) error {
	spec := DeviceSpec{ID: v.Device.ID, Driver: v.Device.Driver, Props: v.Device.Props}
	if v.Spec != nil {
		spec = *v.Spec
	}
	if v.Persist || v.Spec == nil { // a generic device always went into the config
		d.Config = d.Config.WithDevice(spec)
	}
	if v.Live && d.Running != nil {
		lc := d.Running.WithDevice(spec)
		d.Running = &lc
	}
	return nil
}

func foldDetachRequested(d *Domain, v DeviceDetachRequested, _ Event) error {
	if v.Persist {
		d.Config, _ = d.Config.WithoutDevice(v.ID)
	}
	if d.Running != nil && !slices.Contains(d.Pending, v.ID) {
		d.Pending = append(d.Pending, v.ID)
	}
	return nil
}

func foldDetached(d *Domain, v DeviceDetached, _ Event) error {
	if !v.Live && !v.Persist { // schema 1's meaning: gone from both
		v.Live, v.Persist = true, true
	}
	if v.Persist {
		d.Config, _ = d.Config.WithoutDevice(v.ID)
	}
	if v.Live && d.Running != nil {
		lc, _ := d.Running.WithoutDevice(v.ID)
		d.Running = &lc
		d.Pending = without(d.Pending, v.ID)
	}
	return nil
}

func without(ids []string, id string) []string {
	ids = slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
	if len(ids) == 0 {
		return nil
	}
	return ids
}
