package domains

import (
	"fmt"
	"regexp"
	"strings"
)

// MachineLimits is what a QEMU machine type can take. A config beyond them
// could be defined but never started, so Validate refuses it at define.
type MachineLimits struct {
	Family       string // "pc" (i440FX/PIIX) or "q35" (ICH9)
	MaxVCPUs     uint32
	MaxMemoryMiB uint64
	// IDEPorts and SATAPorts are the disks the driver can place on each
	// bus; SharedPorts: IDE and SATA disks share one controller's ports.
	IDEPorts, SATAPorts int
	SharedPorts         bool
}

// Limits measured on QEMU 7.2 (Debian 12), with the command line
// hypervisor/qemu builds (-cpu default, so 40 physical address bits):
//
//   - vCPUs: query-machines says cpu-max 255 for pc and 288 for q35, but
//     more than 255 needs x2APIC with interrupt remapping (an intel-iommu
//     with eim=on and a split irqchip), which the driver does not set up;
//     QEMU then refuses "-smp 256" on both. So 255 for both.
//   - RAM: the largest -m that starts (bisected in MiB): pc-i440fx-7.2
//     1033216 MiB, older pc-i440fx 1045504; pc-q35-7.2 1001472 MiB, older
//     pc-q35 1013760. Beyond, QEMU exits with "Address space limit
//     0xffffffffff < ... phys-bits too low (40)": RAM above 4 GiB plus the
//     64-bit PCI hole must fit in 2^40. The table keeps the smaller (newer)
//     figure for every version of a family.
//   - Disks: PIIX has ide.0 and ide.1 with two units each; ICH9's AHCI has
//     six ports that IDE- and SATA-bus disks share; on pc the driver adds
//     one six-port AHCI for SATA disks (hypervisor/qemu/cmdline_devices.go).
var (
	pcLimits  = MachineLimits{Family: "pc", MaxVCPUs: MaxVCPUs, MaxMemoryMiB: MaxMemoryMiB, IDEPorts: 4, SATAPorts: 6}
	q35Limits = MachineLimits{Family: "q35", MaxVCPUs: MaxVCPUs, MaxMemoryMiB: 1001472, IDEPorts: 6, SATAPorts: 6, SharedPorts: true}
)

// versionedMachineRE: pc-i440fx-7.2, pc-q35-4.0.1, ... A version this
// QEMU lacks fails at start; a newer QEMU has more, and takes at least the
// family's limits here.
var versionedMachineRE = regexp.MustCompile(`^pc-(i440fx|q35)-[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2})?$`)

// Machine returns the limits of a QEMU machine type ("" is pc), or an
// error naming the types vmledger runs: the driver's command line is
// built for i440FX and ICH9 only.
func Machine(name string) (MachineLimits, error) {
	switch name {
	case "", "pc":
		return pcLimits, nil
	case "q35":
		return q35Limits, nil
	}
	if m := versionedMachineRE.FindStringSubmatch(name); m != nil && m[1] == "q35" {
		return q35Limits, nil
	} else if m != nil {
		return pcLimits, nil
	}
	return MachineLimits{}, fmt.Errorf("machine %s: not a machine type vmledger runs (pc, q35, pc-i440fx-X.Y, pc-q35-X.Y)", Quote(name))
}

// Disk buses.
const (
	BusVirtio = "virtio"
	BusIDE    = "ide"
	BusSATA   = "sata"
	BusUSB    = "usb" // usb-storage on the xHCI controller
)

// EffectiveBus is the disk's bus, inferred from the target's prefix (as
// libvirt does) when not given: hdX is IDE, sdX SATA, anything else virtio.
func (d Disk) EffectiveBus() string {
	switch {
	case d.Bus != "":
		return d.Bus
	case strings.HasPrefix(d.Target, "hd"):
		return BusIDE
	case strings.HasPrefix(d.Target, "sd"):
		return BusSATA
	}
	return BusVirtio
}

// problems lists what of c the machine cannot take.
func (l MachineLimits) problems(c Config) []string {
	var p []string
	if c.VCPUs > l.MaxVCPUs {
		p = append(p, fmt.Sprintf("vcpus %d: machine %s takes at most %d", c.VCPUs, l.Family, l.MaxVCPUs))
	}
	if c.MemoryMiB > l.MaxMemoryMiB {
		p = append(p, fmt.Sprintf("memory_mib %d: machine %s maps at most %d MiB (QEMU's 40-bit guest address space)", c.MemoryMiB, l.Family, l.MaxMemoryMiB))
	}
	var ide, sata int
	for i, d := range c.Disks {
		switch d.EffectiveBus() {
		case BusIDE:
			ide++
		case BusSATA:
			sata++
		default:
			continue
		}
		if d.ReadOnly {
			// QEMU 7.2's ide-hd refuses a read-only block node.
			p = append(p, fmt.Sprintf("disks[%d]: read-only disks need bus virtio (an IDE or SATA hard disk cannot be read-only)", i))
		}
	}
	if l.SharedPorts && ide+sata > l.IDEPorts {
		p = append(p, fmt.Sprintf("%d IDE and SATA disks: machine %s has %d ports for both", ide+sata, l.Family, l.IDEPorts))
	}
	if !l.SharedPorts && ide > l.IDEPorts {
		p = append(p, fmt.Sprintf("%d IDE disks: machine %s has %d IDE ports", ide, l.Family, l.IDEPorts))
	}
	if !l.SharedPorts && sata > l.SATAPorts {
		p = append(p, fmt.Sprintf("%d SATA disks: machine %s has %d SATA ports", sata, l.Family, l.SATAPorts))
	}
	return p
}
