// Command vmledger is the agent (vmledger agent) and its CLI (every other
// verb): an event-sourced manager for KVM guests.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, stable for scripts (docs/cli.md).
const (
	exitOK          = 0
	exitInternal    = 1
	exitUsage       = 2 // bad flags or arguments, or input the agent refused as invalid
	exitNotFound    = 3
	exitConflict    = 4 // exists already, wrong state
	exitUnavailable = 5 // no agent, no hypervisor, timeout
	exitCorrupt     = 6 // a damaged log: log verify found problems, or a log verb or the agent refused the file
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd, err := newRoot().ExecuteContextC(ctx)
	stop()
	os.Exit(reportError(os.Stderr, cmd, os.Args[1:], err)) // cli_errors.go
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "vmledger",
		Short: "Event-sourced manager for KVM guests",
		Long: `vmledger manages KVM guests ("domains") like libvirt, with every change
recorded as an event in a durable log and published on NATS.

"vmledger agent" is the daemon; every other verb is a client that talks to
an agent over NATS.

Exit codes: 0 ok, 1 internal error, 2 usage or invalid input, 3 not found,
4 conflict (exists, wrong state), 5 unavailable (no agent, no hypervisor),
6 a damaged log (log verify, or a log verb or the agent refusing the file)
  or dump file (dump-info, dump-read).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError(err) })
	g.register(root)
	setVersion(root)
	root.AddCommand(
		newAgentCmd(),
		newDefineCmd(g), newUndefineCmd(g), newListCmd(g), newInfoCmd(g), newConfigCmd(g),
		newLifecycleCmd(g, "start", "Boot a shut-off domain"),
		newShutdownCmd(g), // shutdown_cmd.go
		newLifecycleCmd(g, "destroy", "Stop a domain at once (kill QEMU)"),
		newLifecycleCmd(g, "suspend", "Pause a running domain's vCPUs"),
		newLifecycleCmd(g, "resume", "Resume a paused domain"),
		newLifecycleCmd(g, "reset", "Hard-reset a running domain"),
		newEventsCmd(g), newHistoryCmd(g), newHostsCmd(g), newConsoleCmd(g), newGuestImageCmd(),
		newLogCmd(g), newJobCmd(g), newDumpInfoCmd(g), newDumpReadCmd(), newDumpCmd(g),
		newSaveCmd(g), newRestoreCmd(g), newManagedSaveCmd(g), newManagedSaveRemoveCmd(g), newSaveImageCmd(),
		newAttachDeviceCmd(g), newDetachDeviceCmd(g),
		newMigrateCmd(g), newVersionCmd(g),
	)
	root.AddCommand(newVirshCmds(g)...) // virsh_cmds.go
	guardGroups(root)
	registerCompletions(root, g)
	return root
}
