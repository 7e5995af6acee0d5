package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// maxSpecFile bounds what attach-device reads: one device is small.
const maxSpecFile = 64 << 10

func addDeviceFlags(cmd *cobra.Command, o *domains.DeviceOptions) {
	cmd.Flags().BoolVar(&o.Live, "live", false, "change the running guest only (refused when it is shut off)")
	cmd.Flags().BoolVar(&o.Config, "config", false, "change the persistent config only (the next start)")
	cmd.Flags().BoolVar(&o.Persistent, "persistent", false, "change both: the running guest (if any) and the persistent config")
}

const deviceFlagsHelp = "Without --live, --config or --persistent: the running guest when the domain runs, else the\nconfig (as virsh). "

func newAttachDeviceCmd(g *globals) *cobra.Command {
	var cmdID string
	var o domains.DeviceOptions
	cmd := &cobra.Command{
		Use:   "attach-device DOMAIN SPEC",
		Short: "Attach a device from a JSON or YAML spec ('-' for stdin)",
		Long: "Attach a device from a JSON or YAML spec ('-' for stdin): one entry of the config's disks,\n" +
			"nics, ports or dimms lists in the same fields, plus kind (disk, nic, serial, memory) and id:\n\n" +
			"  kind: disk, id: usb1, target: sdb, path: /var/lib/vm/x.img, format: raw, bus: usb\n" +
			"  kind: nic, id: nic1, mode: user\n" +
			"  kind: memory, id: dimm1, size_mib: 256   (needs max_memory_mib and memory_slots)\n" +
			"  kind: serial, id: port1, name: org.example.0\n\n" +
			deviceFlagsHelp + "The spec is read strictly, as define reads a config (docs/cli.md, \"Devices\").",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := readSpec(args[1], cmd.InOrStdin())
			if err != nil {
				return err
			}
			var res domains.Result
			req := api.DeviceRequest{CommandID: orRandom(cmdID), Domain: args[0], Spec: &spec, Options: o}
			if err := g.call(cmd.Context(), api.VerbAttachDevice, req, &res); err != nil {
				return err
			}
			return g.printResult(cmd, res, "attached device "+spec.ID)
		},
	}
	addDeviceFlags(cmd, &o)
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

func newDetachDeviceCmd(g *globals) *cobra.Command {
	var cmdID string
	var o domains.DeviceOptions
	cmd := &cobra.Command{
		Use:   "detach-device DOMAIN ID",
		Short: "Detach a device by id; the guest completes a live detach (DEVICE_DELETED)",
		Long: "Detach a device by id. A live detach asks the guest (device_del) and returns: the device is\n" +
			"'detach-pending' (info) until QEMU reports DEVICE_DELETED (device-detached) or the guest\n" +
			"refuses (device-detach-failed); with --timeout, a detach still pending then fails.\n" +
			"USB and virtio-serial devices go at once; PCI devices and DIMMs need the guest's OS.\n\n" +
			deviceFlagsHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Timeout < 0 {
				return usagef("--timeout %s: must not be negative", o.Timeout)
			}
			var res domains.Result
			req := api.DeviceRequest{CommandID: orRandom(cmdID), Domain: args[0], ID: args[1], Options: o}
			if err := g.call(cmd.Context(), api.VerbDetachDevice, req, &res); err != nil {
				return err
			}
			return g.printResult(cmd, res, "was asked to release device "+args[1])
		},
	}
	addDeviceFlags(cmd, &o)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 0, "record the detach as failed if the guest has not released the device by then (0: wait)")
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

// readSpec reads a device spec as strictly as readConfig reads a config.
func readSpec(path string, stdin io.Reader) (domains.DeviceSpec, error) {
	var s domains.DeviceSpec
	err := readYAMLInto("spec", path, stdin, maxSpecFile, func(js []byte) error { return domains.DecodeStrict(js, &s) })
	return s, err
}
