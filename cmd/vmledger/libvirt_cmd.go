package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/libvirtxml"
)

// addFromLibvirt gives define --from-libvirt: FILE is a libvirt domain
// XML (virsh dumpxml), mapped by domains/libvirtxml.
func addFromLibvirt(cmd *cobra.Command, on *bool) {
	cmd.Flags().BoolVar(on, "from-libvirt", false,
		"FILE is a libvirt domain XML (virsh dumpxml DOMAIN > FILE): name, uuid, memory, vcpu, os kernel/initrd/cmdline, clock, disks, user-mode interfaces and the serial port are imported; anything else is refused, every item listed (docs/cli.md)")
}

// readLibvirt reads and maps a libvirt domain XML ('-': stdin), bounded
// at libvirtxml.MaxBytes.
func readLibvirt(path string, stdin io.Reader) (domains.Config, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return domains.Config{}, usagef("read libvirt XML: %w", err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, libvirtxml.MaxBytes+1))
	if err != nil {
		return domains.Config{}, usagef("read libvirt XML: %w", err)
	}
	cfg, err := libvirtxml.Convert(raw)
	if err != nil {
		if path == "-" {
			path = "stdin"
		}
		return domains.Config{}, usagef("%s: %w", path, err)
	}
	return cfg, nil
}

// readDefineInput is define's FILE: a vmledger config, or with
// --from-libvirt a libvirt domain XML.
func readDefineInput(path string, stdin io.Reader, fromLibvirt bool) (domains.Config, error) {
	if fromLibvirt {
		return readLibvirt(path, stdin)
	}
	return readConfig(path, stdin)
}
