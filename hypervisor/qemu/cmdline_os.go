package qemu

import "github.com/vmledger/vmledger/domains"

// addOS maps direct kernel boot and the config's features.
//
// -kernel, -initrd and -append each take their whole argument as one
// string (QEMU 7.2 stores it as a machine property without parsing it as
// QemuOpts), so nothing is escaped; Config.Validate has already refused
// commas and control characters in the paths and anything but printable
// ASCII in the command line. SeaBIOS still runs, but hands over to
// QEMU's linuxboot option ROM, which loads both files through fw_cfg.
//
// -device vmcoreinfo is a fw_cfg file (etc/vmcoreinfo) that a Linux guest
// with qemu_fw_cfg fills with the address of its VMCOREINFO note; QEMU
// then adds that note to dump-guest-memory's output. The device needs
// fw_cfg DMA, which every pc and q35 machine type since 2.9 has.
func addOS(a *argv, cfg domains.Config) {
	if o := cfg.OS; o != nil && o.Kernel != "" {
		a.add("-kernel", o.Kernel)
		if o.Initrd != "" {
			a.add("-initrd", o.Initrd)
		}
		if o.Cmdline != "" {
			a.add("-append", o.Cmdline)
		}
	}
	if cfg.HasFeature(domains.FeatureVMCOREINFO) {
		a.add("-device", "vmcoreinfo")
	}
}
