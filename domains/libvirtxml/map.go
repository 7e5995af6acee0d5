package libvirtxml

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func (m *mapper) domain(root *node) domains.Config {
	var cfg domains.Config
	root.seen = true
	if root.name != "domain" {
		m.refuse(root, "top-level element <%s>, want <domain>", root.name)
		return cfg
	}
	switch t := root.attr("type"); t {
	case "kvm", "qemu":
	default:
		m.refuse(root, "domain type %q: vmledger runs QEMU/KVM guests (kvm or qemu)", t)
	}
	root.attr("id") // dumpxml of a running domain: its libvirt runtime id
	for _, name := range []string{"title", "description", "metadata", "resource"} {
		for _, n := range root.all(name) {
			n.ignore()
		}
	}
	if n := root.child("name"); n != nil {
		cfg.Name = n.value()
	} else {
		m.refuse(root, "no <name>")
	}
	if n := root.child("uuid"); n != nil {
		id, err := uuid.Parse(n.value())
		if err != nil {
			m.refuse(n, "uuid %q: %v", n.value(), err)
		}
		cfg.UUID = id
	}
	cfg.MemoryMiB = m.memory(root)
	cfg.VCPUs = m.vcpu(root)
	m.os(root, &cfg)
	m.features(root, &cfg)
	m.cpu(root)
	cfg.Clock = m.clock(root)
	m.lifecycle(root, &cfg)
	if n := root.child("seclabel"); n != nil {
		if n.attr("type") == "none" {
			n.ignore()
		}
	}
	if d := root.child("devices"); d != nil {
		m.devices(d, &cfg)
	}
	return cfg
}

// unitBytes is libvirt's memory units (formatdomain.html, "Memory
// Allocation"): k/KiB by default; KB, MB... are powers of 1000.
var unitBytes = map[string]int64{
	"b": 1, "bytes": 1,
	"KB": 1e3, "k": 1 << 10, "KiB": 1 << 10,
	"MB": 1e6, "M": 1 << 20, "MiB": 1 << 20,
	"GB": 1e9, "G": 1 << 30, "GiB": 1 << 30,
	"TB": 1e12, "T": 1 << 40, "TiB": 1 << 40,
}

// mib converts a libvirt size to MiB; it must be a whole number of them.
func (m *mapper) mib(n *node) (uint64, bool) {
	unit := n.attr("unit")
	if unit == "" {
		unit = "KiB"
	}
	per, ok := unitBytes[unit]
	if !ok {
		m.refuse(n, "unit %q: want one of b, KB, KiB, MB, MiB, GB, GiB, TB, TiB", unit)
		return 0, false
	}
	v, err := strconv.ParseUint(n.value(), 10, 64)
	if err != nil {
		m.refuse(n, "%q: not a whole number", n.value())
		return 0, false
	}
	b := new(big.Int).Mul(new(big.Int).SetUint64(v), big.NewInt(per))
	q, r := new(big.Int).QuoRem(b, big.NewInt(1<<20), new(big.Int))
	if r.Sign() != 0 || !q.IsUint64() {
		m.refuse(n, "%s %s: not a whole number of MiB", n.value(), unit)
		return 0, false
	}
	return q.Uint64(), true
}

func (m *mapper) memory(root *node) uint64 {
	n := root.child("memory")
	if n == nil {
		m.refuse(root, "no <memory>")
		return 0
	}
	n.attr("dumpCore") // a host-side coredump filter: nothing to keep
	mem, _ := m.mib(n)
	if c := root.child("currentMemory"); c != nil {
		// vmledger has no balloon: the guest always has all its memory.
		if cur, ok := m.mib(c); ok && cur != mem {
			m.refuse(c, "%d MiB, less than <memory> %d MiB: vmledger has no balloon; set both equal", cur, mem)
		}
	}
	return mem
}

func (m *mapper) vcpu(root *node) uint32 {
	n := root.child("vcpu")
	if n == nil {
		return 1 // libvirt's default too
	}
	if p := n.attr("placement"); p != "" && p != "static" {
		m.refuse(n, "placement %q: vmledger does no vCPU placement", p)
	}
	v, err := strconv.ParseUint(n.value(), 10, 32)
	if err != nil {
		m.refuse(n, "%q: not a whole number", n.value())
		return 0
	}
	if c := n.attr("current"); c != "" && c != n.value() {
		m.refuse(n, "current %s of %d: vmledger starts every vCPU it is given", c, v)
	}
	return uint32(v)
}

func (m *mapper) os(root *node, cfg *domains.Config) {
	n := root.child("os")
	if n == nil {
		return
	}
	if t := n.child("type"); t != nil {
		if t.value() != "hvm" {
			m.refuse(t, "%q: vmledger runs full virtualization (hvm) only", t.value())
		}
		if a := t.attr("arch"); a != "" && a != "x86_64" {
			m.refuse(t, "arch %q: vmledger runs x86_64 guests", a)
		}
		if mt := t.attr("machine"); mt != "" && mt != "pc" {
			cfg.Machine = mt // pc-i440fx-7.2, q35, ...: the agent checks it
		}
	}
	o := &domains.OS{}
	if k := n.child("kernel"); k != nil {
		o.Kernel = k.value()
	}
	if i := n.child("initrd"); i != nil {
		o.Initrd = i.value()
	}
	if c := n.child("cmdline"); c != nil {
		o.Cmdline = c.value()
	}
	if *o != (domains.OS{}) {
		cfg.OS = o
	}
	for _, b := range n.all("boot") {
		// QEMU's default order boots the first disk: that is hd.
		if d := b.attr("dev"); d != "hd" {
			m.refuse(b, "boot from %q: vmledger boots from a disk (hd) or a kernel", d)
		}
	}
}

func (m *mapper) features(root *node, cfg *domains.Config) {
	n := root.child("features")
	if n == nil {
		return
	}
	for _, f := range n.children {
		switch f.name {
		case "acpi", "apic", "pae":
			f.seen = true // on in every QEMU pc and q35 guest vmledger starts
		case "vmcoreinfo":
			f.seen = true
			if s := f.attr("state"); s == "" || s == "on" {
				cfg.Features = append(cfg.Features, domains.FeatureVMCOREINFO)
			}
		}
	}
}

// cpu accepts only what vmledger gives every guest: QEMU's default
// model, qemu64.
func (m *mapper) cpu(root *node) {
	n := root.child("cpu")
	if n == nil {
		return
	}
	mode := n.attr("mode")
	model := n.child("model")
	if (mode == "" || mode == "custom") && model != nil && model.value() == "qemu64" {
		n.attr("match")
		n.attr("check")
		model.attr("fallback")
		return
	}
	m.refuse(n, "cpu mode %q: vmledger gives every guest QEMU's default CPU (qemu64); host-passthrough, host-model and other models are not modelled", mode)
	n.ignore() // one line for the whole element
}

func (m *mapper) clock(root *node) domains.Clock {
	n := root.child("clock")
	if n == nil {
		return domains.Clock{Offset: domains.OffsetUTC}
	}
	c := domains.Clock{Offset: n.attr("offset")}
	adj := n.attr("adjustment")
	seconds := func() int64 {
		v, err := strconv.ParseInt(adj, 10, 64)
		if err != nil {
			m.refuse(n, "adjustment %q: not a whole number of seconds", adj)
		}
		return v
	}
	switch c.Offset {
	case domains.OffsetUTC, domains.OffsetLocaltime:
		// formatdomain: adjustment='reset' keeps the mode (the RTC starts
		// from host time at each boot, which is what vmledger's utc and
		// localtime do); a number converts it to variable mode with that
		// initial adjustment and the mode as basis.
		if adj != "" && adj != "reset" {
			c = domains.Clock{Offset: domains.OffsetVariable, Adjustment: seconds(), Basis: c.Offset}
		}
	case domains.OffsetVariable:
		c.Basis = n.attr("basis")
		if c.Basis == "" {
			c.Basis = domains.BasisUTC
		}
		if c.Basis != domains.BasisUTC && c.Basis != domains.BasisLocaltime {
			m.refuse(n, "basis %q: want utc or localtime", c.Basis)
		}
		if adj != "" {
			c.Adjustment = seconds()
		}
	default:
		m.refuse(n, "offset %q: vmledger has utc, localtime and variable", c.Offset)
	}
	return c
}

func (m *mapper) lifecycle(root *node, cfg *domains.Config) {
	want := map[string]string{"on_poweroff": "destroy", "on_reboot": "restart"}
	for name, ok := range want {
		if n := root.child(name); n != nil && n.value() != ok {
			m.refuse(n, "%q: vmledger does %s", n.value(), ok)
		}
	}
	if n := root.child("on_crash"); n != nil {
		switch v := n.value(); v {
		case domains.CrashDestroy, domains.CrashRestart, domains.CrashPreserve, domains.CrashCoredumpDestroy, domains.CrashCoredumpRestart:
			if v != domains.CrashDestroy {
				cfg.OnCrash = v
			}
		default:
			m.refuse(n, "%q: want destroy, restart, preserve, coredump-destroy or coredump-restart", v)
		}
	}
}

func (m *mapper) devices(d *node, cfg *domains.Config) {
	for _, c := range d.children {
		// dumpxml's runtime and placement details, dropped on purpose.
		for _, x := range c.all("address") {
			x.ignore()
		}
		for _, x := range c.all("alias") {
			x.ignore()
		}
		switch c.name {
		case "emulator":
			c.seen = true
		case "disk":
			c.seen = true
			if disk, ok := m.disk(c); ok {
				cfg.Disks = append(cfg.Disks, disk)
			}
		case "interface":
			c.seen = true
			if nic, ok := m.nic(c, len(cfg.NICs)); ok {
				cfg.NICs = append(cfg.NICs, nic)
			}
		case "serial":
			c.seen = true
			m.serial(c, cfg)
		case "console":
			c.seen = true
			m.console(c)
		case "controller":
			c.seen = true
			m.controller(c)
		case "input":
			// PS/2 mouse and keyboard are part of the pc and q35 machines.
			if c.attr("bus") == "ps2" {
				c.seen = true
				c.attr("type")
			}
		case "memballoon", "audio":
			if c.attr("model") == "none" || c.attr("type") == "none" {
				c.ignore() // none: no such device, as vmledger has
			}
		}
	}
}

func (m *mapper) disk(n *node) (domains.Disk, bool) {
	var d domains.Disk
	ok := true
	if dev := n.attr("device"); dev != "" && dev != "disk" {
		m.refuse(n, "device %q: vmledger has disks only (no cdrom, floppy or lun)", dev)
		ok = false
	}
	if t := n.attr("type"); t != "file" {
		m.refuse(n, "type %q: vmledger disks are image files (type file)", t)
		ok = false
	}
	if drv := n.child("driver"); drv != nil {
		if name := drv.attr("name"); name != "" && name != "qemu" {
			m.refuse(drv, "driver %q: want qemu", name)
		}
		d.Format = drv.attr("type")
		if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
			m.refuse(drv, "format %q: vmledger opens raw and qcow2", d.Format)
		}
	}
	if s := n.child("source"); s != nil {
		d.Path = s.attr("file")
		s.attr("index") // dumpxml's runtime numbering of the chain
	}
	if b := n.child("backingStore"); b != nil {
		b.ignore() // a qcow2's backing file is in the image itself
	}
	if d.Path == "" {
		m.refuse(n, "no <source file=...>: an empty drive cannot be mapped")
		ok = false
	}
	if t := n.child("target"); t != nil {
		d.Target = t.attr("dev")
		d.Bus = t.attr("bus")
		switch d.Bus {
		case "", "virtio", "ide", "sata", "usb":
		default:
			m.refuse(t, "bus %q: vmledger has virtio, ide, sata and usb", d.Bus)
		}
	} else {
		m.refuse(n, "no <target dev=...>")
		ok = false
	}
	if r := n.child("readonly"); r != nil {
		d.ReadOnly = true
	}
	if b := n.child("boot"); b != nil {
		b.attr("order")
		d.Boot = true
	}
	return d, ok
}

// nicModels maps libvirt's <model type> to QEMU's device.
var nicModels = map[string]string{"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}

func (m *mapper) nic(n *node, index int) (domains.NIC, bool) {
	nic := domains.NIC{ID: fmt.Sprintf("net%d", index)}
	switch t := n.attr("type"); t {
	case "user":
		nic.Mode = "user"
	default:
		m.refuse(n, "type %q: vmledger networks are QEMU user networking (type user) only; no libvirt networks, bridges or taps", t)
		n.ignore()
		return nic, false
	}
	if mac := n.child("mac"); mac != nil {
		nic.MAC = strings.ToLower(mac.attr("address"))
	}
	if md := n.child("model"); md != nil {
		t := md.attr("type")
		dev, ok := nicModels[t]
		if !ok {
			m.refuse(md, "model %q: vmledger maps virtio, e1000, e1000e and rtl8139", t)
		}
		nic.Model = dev
	}
	return nic, true
}

// serial maps the first serial port; vmledger has one, on a socket it
// bridges to NATS, so libvirt's source (pty, file) does not carry over.
func (m *mapper) serial(n *node, cfg *domains.Config) {
	if cfg.Serial != nil {
		m.refuse(n, "a second serial port: vmledger has one")
		n.ignore()
		return
	}
	n.attr("type") // pty, unix, file: the agent's socket replaces it
	for _, s := range n.all("source") {
		s.ignore()
	}
	if t := n.child("target"); t != nil {
		if p := t.attr("port"); p != "" && p != "0" {
			m.refuse(t, "port %s: vmledger's serial port is COM1 (port 0)", p)
		}
		if tt := t.attr("type"); tt != "" && tt != "isa-serial" {
			m.refuse(t, "target type %q: want isa-serial", tt)
		}
		if md := t.child("model"); md != nil && md.attr("name") != "isa-serial" {
			m.refuse(md, "model %q: want isa-serial", md.attr("name"))
		}
	}
	s := &domains.Serial{}
	if l := n.child("log"); l != nil {
		l.attr("file") // the agent keeps the log in the run directory
		l.attr("append")
		s.Log = true
	}
	cfg.Serial = s
}

// console is the same port seen as a console (libvirt shows the first
// serial port twice); anything else is another device.
func (m *mapper) console(n *node) {
	n.attr("type")
	n.attr("tty")
	for _, s := range n.all("source") {
		s.ignore()
	}
	if t := n.child("target"); t != nil {
		if tt := t.attr("type"); tt != "serial" {
			m.refuse(t, "console type %q: vmledger's console is the serial port", tt)
		}
		t.attr("port")
	}
}

// controller accepts the controllers every vmledger guest has anyway.
func (m *mapper) controller(n *node) {
	t, model, index := n.attr("type"), n.attr("model"), n.attr("index")
	implicit := map[string]bool{"pci/pci-root": true, "pci/pcie-root": true, "ide/": true, "sata/": true, "usb/qemu-xhci": true, "usb/nec-xhci": true, "usb/none": true}
	if (index == "" || index == "0") && implicit[t+"/"+model] {
		for _, c := range n.children {
			c.ignore()
		}
		return
	}
	m.refuse(n, "controller type %q model %q index %s: vmledger adds only its own (pci root, IDE/SATA, xHCI)", t, model, index)
	n.ignore()
}
