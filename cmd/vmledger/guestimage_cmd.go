package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/hypervisor/guest"
)

func newGuestImageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "guest-image PATH",
		Short: "Write the project's tiny test guest (a boot sector in a 1 MiB raw disk) to PATH",
		Long: `Write vmledger's own tiny guest: a BIOS boot sector (padded to a 1 MiB raw disk, as q35's AHCI boot needs) that prints
"RTC YYYY-MM-DD hh:mm:ss" on COM1 every second and sets its RTC when it
reads "T YYYYMMDDhhmmss" (see docs/guest.md). Use it as a raw IDE disk:

  disks: [{target: hda, path: PATH, format: raw, bus: ide}]`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := guest.WriteImage(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (a %d-byte boot sector in a %d-byte disk)\n", args[0], len(guest.Image()), guest.DiskSize)
			return nil
		},
	}
}
