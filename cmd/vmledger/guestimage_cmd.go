package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest"
)

func newGuestImageCmd() *cobra.Command {
	var linuxDir, name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "guest-image PATH | --linux DIR",
		Short: "Write the project's tiny test guest to PATH, or build the Linux test guest into DIR",
		Long: `Write vmledger's own tiny guest: a BIOS boot sector (padded to a 1 MiB raw disk, as q35's AHCI boot needs) that prints
"RTC YYYY-MM-DD hh:mm:ss" on COM1 every second and sets its RTC when it
reads "T YYYYMMDDhhmmss" (see docs/guest.md). Use it as a raw IDE disk:

  disks: [{target: hda, path: PATH, format: raw, bus: ide}]

With --linux DIR, build the Linux test guest instead: Debian's cloud kernel
as installed (linux-image-cloud-amd64) and a busybox initramfs written to
DIR/initrd.gz (busybox-static, the needed modules from modules.dep, an
init that prints "VMLEDGER LINUX READY" and its RTC on ttyS0, obeys the
ACPI power button and runs a shell there). It prints a config that boots
it directly (os: kernel, initrd, cmdline), ready for "vmledger define -".`,
		Args: func(cmd *cobra.Command, args []string) error {
			if linuxDir != "" {
				return exactArgs(0)(cmd, args)
			}
			return exactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if linuxDir != "" {
				if !domains.ValidName(name) {
					return usagef("--name %.64q: not a valid domain name", name)
				}
				img, err := linuxguest.Build(cmd.Context(), linuxDir)
				if err != nil {
					return err
				}
				return printLinuxConfig(cmd.OutOrStdout(), img, name, asJSON)
			}
			if err := guest.WriteImage(args[0]); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"path": args[0], "boot_sector_bytes": len(guest.Image()), "disk_bytes": guest.DiskSize})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (a %d-byte boot sector in a %d-byte disk)\n", args[0], len(guest.Image()), guest.DiskSize)
			return nil
		},
	}
	cmd.Flags().StringVar(&linuxDir, "linux", "", "build the Linux test guest into `DIR` and print a config for it")
	cmd.Flags().StringVar(&name, "name", "linux", "the domain name in the printed config (with --linux)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --linux: the config as JSON)")
	return cmd
}

// linuxGuestConfig is the config printed for the Linux guest (without a
// UUID: define assigns one).
type linuxGuestConfig struct {
	Name      string         `json:"name"`
	MemoryMiB uint64         `json:"memory_mib"`
	VCPUs     uint32         `json:"vcpus"`
	Clock     domains.Clock  `json:"clock"`
	Serial    domains.Serial `json:"serial"`
	Features  []string       `json:"features"`
	OS        *domains.OS    `json:"os"`
}

// linuxGuestMemoryMiB is enough for the cloud kernel and the initramfs
// (which lives in RAM) with room to spare.
const linuxGuestMemoryMiB = 256

func printLinuxConfig(w io.Writer, img linuxguest.Image, name string, asJSON bool) error {
	c := linuxGuestConfig{
		Name: name, MemoryMiB: linuxGuestMemoryMiB, VCPUs: 1,
		Clock:    domains.Clock{Offset: domains.OffsetUTC},
		Serial:   domains.Serial{Log: true},
		Features: []string{domains.FeatureVMCOREINFO},
		OS:       img.OS(),
	}
	if asJSON {
		return printJSON(w, c)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "# vmledger's Linux test guest: kernel %s, %d modules (docs/guest.md)\n%s", img.Release, len(img.Modules), b)
	return err
}
