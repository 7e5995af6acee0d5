package qemu

import (
	"fmt"
	"slices"

	"github.com/vmledger/vmledger/domains"
)

// The command-line side of hot-pluggable devices: a domain started with
// devices attached earlier gets them with the names hotplug.go uses, so
// they are released alike and a restore or migration finds the machine
// the stream was saved from.

// memOption is -m: with max_memory_mib, the slots and ceiling that DIMMs
// plug into.
func memOption(cfg domains.Config) string {
	if cfg.MaxMemoryMiB == 0 {
		return fmt.Sprintf("%dM", cfg.MemoryMiB)
	}
	return fmt.Sprintf("%dM,slots=%d,maxmem=%dM", cfg.MemoryMiB, cfg.MemorySlots, cfg.MaxMemoryMiB)
}

// addUSB adds the xHCI controller once, before the first USB disk.
func addUSB(a *argv) {
	if slices.Contains(*a, "qemu-xhci,id="+xhciID) {
		return
	}
	a.add("-device", "qemu-xhci,id="+xhciID)
}

// addDIMMs: each DIMM's file is made fresh by the ramFile step.
func addDIMMs(a *argv, cfg domains.Config, p Paths) {
	for _, m := range cfg.DIMMs {
		a.add("-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=on", memObject(m.ID), m.SizeMiB, esc(dimmFile(p, m.ID))))
		a.add("-device", fmt.Sprintf("pc-dimm,id=%s,memdev=%s", m.ID, memObject(m.ID)))
	}
}

// addPorts adds the virtio-serial controller and a socket per port.
func addPorts(a *argv, cfg domains.Config, p Paths) {
	if len(cfg.Ports) == 0 {
		return
	}
	a.add("-device", "virtio-serial-pci,id="+vserID)
	for _, pt := range cfg.Ports {
		a.add("-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", chardevID(pt.ID), esc(portSocket(p, pt.ID))))
		dev := fmt.Sprintf("virtserialport,bus=%s.0,chardev=%s,id=%s", vserID, chardevID(pt.ID), pt.ID)
		if pt.Name != "" {
			dev += ",name=" + pt.Name
		}
		a.add("-device", dev)
	}
}
