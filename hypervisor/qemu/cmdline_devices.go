package qemu

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/vmledger/vmledger/domains"
)

// Disk buses.
const (
	busVirtio = domains.BusVirtio
	busIDE    = domains.BusIDE
	busSATA   = domains.BusSATA
)

// modelRE guards NIC models, which domains.Config.Validate leaves open:
// a comma there would smuggle options into -device.
var modelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// addDisks maps disks to -blockdev (a file node and a format node) plus
// -device. -blockdev rather than -drive because it creates exactly the
// nodes asked for, with no implicit controller, interface or cache
// defaults, and the node names are what later block jobs, migration and
// hot-unplug address. Node names are by position (disk0, disk0-file): they
// must be at most 31 bytes, which a 32-byte target would not fit. The
// device id is the target, the name users know the disk by.
//
// Devices get explicit bus addresses. A migration destination must lay the
// machine out exactly like the source, and explicit addresses do not
// depend on QEMU's auto-assignment order.
func addDisks(a *argv, cfg domains.Config) error {
	q35 := isQ35(cfg.Machine)
	var ide, sata int // disks placed on each controller so far
	boot := 0
	ahci := false
	for i, d := range cfg.Disks {
		node, file := fmt.Sprintf("disk%d", i), fmt.Sprintf("disk%d-file", i)
		if d.ID != "" { // hot-pluggable by id: the names hotplug.go releases
			node, file = diskNode(d.ID), fileNode(d.ID)
		}
		ro := ""
		if d.ReadOnly {
			ro = ",read-only=on"
		}
		a.add("-blockdev", fmt.Sprintf("driver=%s,node-name=%s,filename=%s%s", fileDriver(d.Path), file, esc(d.Path), ro))
		a.add("-blockdev", fmt.Sprintf("driver=%s,node-name=%s,file=%s%s", d.Format, node, file, ro))

		var dev string
		switch bus := d.EffectiveBus(); bus {
		case busVirtio:
			dev = "virtio-blk-pci"
		case domains.BusUSB:
			addUSB(a)
			ports, _ := cfg.USBPortsOf() // Validate has checked they fit
			dev = fmt.Sprintf("usb-storage,bus=%s.0,port=%d", xhciID, ports[d.DeviceID()])
		case busIDE, busSATA:
			if d.ReadOnly {
				// QEMU 7.2: "Block node is read-only" for ide-hd.
				return fmt.Errorf("qemu: disk %s: read-only disks need bus virtio (ide-hd cannot be read-only)", d.Target)
			}
			var addr string
			switch {
			case q35: // ICH9's built-in AHCI, buses ide.0..ide.5, one disk each
				addr = fmt.Sprintf("bus=ide.%d", ide+sata)
			case bus == busIDE: // PIIX: ide.0 and ide.1, master and slave each
				addr = fmt.Sprintf("bus=ide.%d,unit=%d", ide/2, ide%2)
			default: // pc has no AHCI: add one
				if !ahci {
					a.add("-device", "ahci,id=sata0")
					ahci = true
				}
				addr = fmt.Sprintf("bus=sata0.%d", sata)
			}
			if bus == busIDE {
				ide++
			} else {
				sata++
			}
			if (q35 && ide+sata > 6) || (!q35 && (ide > 4 || sata > 6)) {
				return fmt.Errorf("qemu: disk %s: no free %s port on machine %s", d.Target, bus, cfg.Machine)
			}
			dev = "ide-hd," + addr
		}
		dev += fmt.Sprintf(",drive=%s,id=%s", node, d.DeviceID())
		if d.Boot {
			boot++
			dev += fmt.Sprintf(",bootindex=%d", boot)
		}
		a.add("-device", dev)
	}
	return nil
}

// isQ35 reports whether machine is an ICH9 (q35) machine type.
func isQ35(machine string) bool { return strings.Contains(machine, "q35") }

// addNICs maps NICs to -netdev plus -device. Mode user (the default) is
// QEMU's slirp, which needs no privileges. Mode none is a NIC with no
// backend: the guest sees a card with no cable (QEMU logs "nic ... has no
// peer"), which keeps PCI addresses stable when networking is switched off.
func addNICs(a *argv, nics []domains.NIC) error {
	for _, n := range nics {
		model := n.Model
		if model == "" {
			model = "virtio-net-pci"
		}
		if !modelRE.MatchString(model) {
			return fmt.Errorf("qemu: nic %s: model %q is not a QEMU device name", n.ID, model)
		}
		dev := model
		if n.Mode != "none" {
			netdev := "net-" + n.ID
			a.add("-netdev", "user,id="+netdev)
			dev += ",netdev=" + netdev
		}
		dev += ",id=" + n.ID
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		a.add("-device", dev)
	}
	return nil
}

// addDevices passes other devices through. Config.Validate has already
// restricted drivers, keys and values to characters with no meaning to
// QEMU's parser; the properties are sorted so that the command line (and
// its golden file) is deterministic.
func addDevices(a *argv, devs []domains.Device) {
	for _, d := range devs {
		var b strings.Builder
		b.WriteString(d.Driver + ",id=" + d.ID)
		keys := make([]string, 0, len(d.Props))
		for k := range d.Props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString("," + k + "=" + d.Props[k])
		}
		a.add("-device", b.String())
	}
}

// fileDriver is QEMU's protocol driver for a disk's host file: file for
// a regular file, host_device for a block device (allowed by the agent's
// --allow-device; QEMU's file driver refuses devices). The one look at
// the file system in CommandLine: a path that does not exist (as in the
// golden tests) is a file.
func fileDriver(path string) string {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		return "host_device"
	}
	return "file"
}
