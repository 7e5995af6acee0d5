package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// The verbs a virsh user reaches for (docs/cli.md, "virsh verbs"). Those
// the agent answers itself (reboot, autostart, qemu-monitor-command,
// vcpuinfo, domtime) have their own bus verbs; the others are built here on
// info, config and define, so they change a domain only through define's
// validation.

func newVirshCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newRebootCmd(g), newAutostartCmd(g), newMonitorCmd(g), newVCPUInfoCmd(g), newDomTimeCmd(g),
		newDomStateCmd(g), newDomBlkListCmd(g), newDomIfListCmd(g), newEditCmd(g),
		newSetVCPUsCmd(g), newSetMemCmd(g),
	}
}

func newRebootCmd(g *globals) *cobra.Command {
	var cmdID string
	cmd := &cobra.Command{
		Use:   "reboot DOMAIN",
		Short: "Reboot a running domain: ACPI power-off answered by a reset (libvirt's fake reboot)",
		Long: "Press the ACPI power button with QEMU told to pause, not exit, when the guest powers off;\n" +
			"when it has, the agent resets it and lets it run: the same QEMU, a fresh boot. The log reads\n" +
			"shutdown, reset (reboot), resumed (rebooted). As with shutdown, the guest decides: one that\n" +
			"ignores the button keeps running, and a later shutdown cancels the reboot.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res domains.Result
			if err := g.call(cmd.Context(), api.VerbReboot, api.DomainRequest{CommandID: orRandom(cmdID), Domain: args[0]}, &res); err != nil {
				return err
			}
			return g.printResult(cmd, res, "is being rebooted")
		},
	}
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

func newAutostartCmd(g *globals) *cobra.Command {
	var cmdID string
	var disable bool
	cmd := &cobra.Command{
		Use:   "autostart DOMAIN [--disable]",
		Short: "Have the agent start the domain when it starts (--disable: no longer)",
		Long: "Mark the domain to be started by the agent when the agent starts, after the guests that kept\n" +
			"running are recovered (a managed save image is restored); an autostart-set event records the\n" +
			"setting. A setting that is already so records nothing and says so.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res domains.Result
			req := api.AutostartRequest{CommandID: orRandom(cmdID), Domain: args[0], Disable: disable}
			if err := g.call(cmd.Context(), api.VerbAutostart, req, &res); err != nil {
				return err
			}
			what := "marked as autostarted"
			if disable {
				what = "unmarked as autostarted"
			}
			if len(res.Seqs) == 0 && !g.json {
				what = "is already " + what + " (nothing recorded"
				fmt.Fprintf(cmd.OutOrStdout(), "Domain %s %s)\n", res.Name, what)
				return nil
			}
			return g.printResult(cmd, res, what)
		},
	}
	cmd.Flags().BoolVar(&disable, "disable", false, "do not start the domain when the agent starts")
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

func newMonitorCmd(g *globals) *cobra.Command {
	var cmdID string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "qemu-monitor-command DOMAIN JSON",
		Short: "Send a raw QMP command to the domain's QEMU (recorded; taints the domain)",
		Long: "Send one raw QMP command, {\"execute\": NAME, \"arguments\": {...}} (at most 16 KiB), to the\n" +
			"running domain's QEMU and print QEMU's \"return\". The command is recorded as a\n" +
			"qemu-monitor-command event (its name, and its arguments' length and SHA-256 only, as they may\n" +
			"hold secrets) and the running domain is tainted (custom-monitor), as libvirt does. Commands\n" +
			"that would change the guest behind the log's back (quit, device_add, migrate, set-action,\n" +
			"human-monitor-command, ...) are refused with the verb to use instead (docs/cli.md).",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args[1]) > domains.MaxMonitorCommand {
				return usagef("monitor command: %d bytes, at most %d", len(args[1]), domains.MaxMonitorCommand)
			}
			if !json.Valid([]byte(args[1])) {
				return usagef("monitor command %s: not JSON (want {\"execute\": NAME, \"arguments\": {...}})", domains.Quote(args[1]))
			}
			var rep domains.MonitorReply
			req := api.MonitorRequest{CommandID: orRandom(cmdID), Domain: args[0], Command: json.RawMessage(args[1])}
			if err := g.call(cmd.Context(), api.VerbMonitorCommand, req, &rep); err != nil {
				return err
			}
			if g.json {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			}
			if rep.Error != "" {
				return domains.Errorf(domains.CodeInternal, "QEMU: %s", rep.Error)
			}
			if g.json {
				return nil
			}
			out := []byte(rep.Return)
			if pretty {
				var b bytes.Buffer
				if json.Indent(&b, out, "", "  ") == nil {
					out = b.Bytes()
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
			return err
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "indent QEMU's reply")
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

func newVCPUInfoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vcpuinfo DOMAIN",
		Short: "The running domain's vCPUs: QEMU's query-cpus-fast, with each thread's host CPU, state and CPU time",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep api.VCPUReply
			if err := g.call(cmd.Context(), api.VerbVCPUInfo, api.DomainRequest{Domain: args[0]}, &rep); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			w := cmd.OutOrStdout()
			for i, v := range rep.VCPUs {
				if i > 0 {
					fmt.Fprintln(w)
				}
				t := newTable(w)
				fmt.Fprintf(t, "VCPU:\t%d\n", v.Index)
				fmt.Fprintf(t, "CPU:\t%d\n", v.HostCPU)
				fmt.Fprintf(t, "State:\t%s\n", v.State)
				fmt.Fprintf(t, "CPU time:\t%.1fs\n", v.CPUTime)
				fmt.Fprintf(t, "Thread:\t%d\n", v.Thread)
				fmt.Fprintf(t, "Socket/core:\t%d/%d\n", v.Socket, v.Core)
				if err := t.Flush(); err != nil {
					return err
				}
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newDomTimeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domtime DOMAIN",
		Short: "The guest's RTC against the host's clock, from the clock projection",
		Long: "The wall time the running guest's RTC reads, from the clock projection (the adjustment QEMU\n" +
			"was started with, moved by every rtc-changed since), beside the agent host's clock and their\n" +
			"difference. A localtime clock reads the host's local time.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep api.DomTimeReply
			if err := g.call(cmd.Context(), api.VerbDomTime, api.DomainRequest{Domain: args[0]}, &rep); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			const layout = "2006-01-02 15:04:05"
			t := newTable(cmd.OutOrStdout())
			fmt.Fprintf(t, "Guest RTC:\t%s\n", rep.GuestRTC.Format(layout))
			fmt.Fprintf(t, "Host (UTC):\t%s\n", rep.Host.Format(layout))
			fmt.Fprintf(t, "Offset:\t%+ds (%s)\n", rep.Offset, spanOf(rep.Offset))
			fmt.Fprintf(t, "Clock:\t%s\n", rep.Clock.Offset)
			return t.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}

// spanOf writes seconds as [-]D days HH:MM:SS.
func spanOf(sec int64) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	return fmt.Sprintf("%s%d days %02d:%02d:%02d", sign, sec/86400, sec%86400/3600, sec%3600/60, sec%60)
}

// domainOf reads a domain's projection (info).
func (g *globals) domainOf(ctx context.Context, ref string) (domains.Domain, error) {
	var d domains.Domain
	err := g.call(ctx, api.VerbInfo, api.DomainRequest{Domain: ref}, &d)
	return d, err
}

func newDomStateCmd(g *globals) *cobra.Command {
	var reason bool
	cmd := &cobra.Command{
		Use:   "domstate DOMAIN [--reason]",
		Short: "A domain's state (--reason: and why it entered it)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.domainOf(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					State  domains.State `json:"state"`
					Reason string        `json:"reason,omitempty"`
				}{d.State, d.Reason})
			}
			if reason && d.Reason != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s (%s)\n", d.State, d.Reason)
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), d.State)
			return nil
		},
	}
	cmd.Flags().BoolVar(&reason, "reason", false, "also print why the domain entered its state")
	addJSON(cmd, g)
	return cmd
}

// shownConfig is the running QEMU's config while it runs (with live device
// changes), else the persistent one; --inactive: the persistent one.
func shownConfig(d domains.Domain, inactive bool) domains.Config {
	if d.Running != nil && !inactive {
		return *d.Running
	}
	return d.Config
}

func newDomBlkListCmd(g *globals) *cobra.Command {
	var inactive, details bool
	cmd := &cobra.Command{
		Use:   "domblklist DOMAIN [--inactive] [--details]",
		Short: "A domain's disks: target and source (of the running QEMU; --inactive: the config's)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.domainOf(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			disks := shownConfig(d, inactive).Disks
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					Disks []domains.Disk `json:"disks"`
				}{append([]domains.Disk{}, disks...)})
			}
			t := newTable(cmd.OutOrStdout())
			if details {
				fmt.Fprintln(t, "TYPE\tDEVICE\tTARGET\tSOURCE\tFORMAT\tBUS\tMODE")
			} else {
				fmt.Fprintln(t, "TARGET\tSOURCE")
			}
			for _, k := range disks {
				if !details {
					fmt.Fprintf(t, "%s\t%s\n", k.Target, k.Path)
					continue
				}
				format, mode := k.Format, "read-write"
				if format == "" {
					format = "raw"
				}
				if k.ReadOnly {
					mode = "read-only"
				}
				fmt.Fprintf(t, "file\tdisk\t%s\t%s\t%s\t%s\t%s\n", k.Target, k.Path, format, k.EffectiveBus(), mode)
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&inactive, "inactive", false, "the persistent config's disks (what the next start has)")
	cmd.Flags().BoolVar(&details, "details", false, "also type, device, format, bus and mode")
	addJSON(cmd, g)
	return cmd
}

func newDomIfListCmd(g *globals) *cobra.Command {
	var inactive bool
	cmd := &cobra.Command{
		Use:   "domiflist DOMAIN [--inactive]",
		Short: "A domain's network interfaces (of the running QEMU; --inactive: the config's)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.domainOf(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			nics := shownConfig(d, inactive).NICs
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					NICs []domains.NIC `json:"nics"`
				}{append([]domains.NIC{}, nics...)})
			}
			t := newTable(cmd.OutOrStdout())
			fmt.Fprintln(t, "INTERFACE\tTYPE\tMODEL\tMAC")
			for _, n := range nics {
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", n.ID, orDash(n.Mode, "user"), orDash(n.Model, "virtio-net-pci"), orDash(n.MAC, "-"))
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&inactive, "inactive", false, "the persistent config's interfaces")
	addJSON(cmd, g)
	return cmd
}

func orDash(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func newEditCmd(g *globals) *cobra.Command {
	var cmdID string
	cmd := &cobra.Command{
		Use:   "edit DOMAIN",
		Short: "Edit a domain's config in $EDITOR (YAML), then define it",
		Long: "Write the domain's persistent config as YAML to a private temporary file, open it in $VISUAL\n" +
			"or $EDITOR (default vi; run by /bin/sh, so it may carry arguments), then read it back as\n" +
			"strictly as define does and define it. An unchanged file changes nothing and says so (exit 0).\n" +
			"An edit that does not read or validate is refused (exit 2, nothing recorded) and kept: the\n" +
			"message names the file, to fix and pass to define. A config changed by someone else during\n" +
			"the edit is not overwritten (exit 4; the edit is kept the same way).",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.domainOf(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			cfg, changed, err := editConfig(cmd, d.Config)
			if err != nil {
				return err
			}
			if !changed {
				return g.printUnchanged(cmd, d)
			}
			return g.defineChanged(cmd, cmdID, d, cfg, "edited")
		},
	}
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

// editConfig runs the editor on cur as YAML and returns what it became.
func editConfig(cmd *cobra.Command, cur domains.Config) (domains.Config, bool, error) {
	before, err := yaml.Marshal(cur)
	if err != nil {
		return domains.Config{}, false, err
	}
	dir, err := os.MkdirTemp("", "vmledger-edit-")
	if err != nil {
		return domains.Config{}, false, fmt.Errorf("edit: %w", err)
	}
	path := filepath.Join(dir, cur.Name+".yaml")
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(path, before, 0o600); err != nil {
		return domains.Config{}, false, fmt.Errorf("edit: %w", err)
	}
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	ed := exec.CommandContext(cmd.Context(), "/bin/sh", "-c", editor+` "$1"`, "sh", path)
	ed.Stdin, ed.Stdout, ed.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
	if err := ed.Run(); err != nil {
		return domains.Config{}, false, fmt.Errorf("edit: the editor (%s) failed, nothing defined: %w", domains.Quote(editor), err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		return domains.Config{}, false, fmt.Errorf("edit: %w", err)
	}
	if bytes.Equal(before, after) {
		return cur, false, nil
	}
	cfg, err := readConfig(path, nil)
	if err != nil {
		keep = true
		return domains.Config{}, false, usagef("%w (nothing defined; the edit is kept in %s)", err, path)
	}
	if cfg.UUID == (domains.Config{}).UUID {
		cfg.UUID = cur.UUID // the edit is of this domain
	}
	return cfg, !sameConfig(cfg, cur), nil
}

func sameConfig(a, b domains.Config) bool {
	x, _ := json.Marshal(a.Normalize())
	y, _ := json.Marshal(b.Normalize())
	return bytes.Equal(x, y)
}

// printUnchanged says that nothing was recorded: as a result without
// sequences under --json.
func (g *globals) printUnchanged(cmd *cobra.Command, d domains.Domain) error {
	if g.json {
		return printJSON(cmd.OutOrStdout(), domains.Result{Domain: d.Config.UUID, Name: d.Config.Name, Seqs: []uint64{}, State: d.State})
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "Domain %s configuration not changed (nothing recorded)\n", d.Config.Name)
	return err
}

// defineChanged defines cfg, a change of base's config. A config that
// changed meanwhile (another edit, attach-device --config) is not
// overwritten: conflict, and the change is kept in a file for define.
func (g *globals) defineChanged(cmd *cobra.Command, cmdID string, base domains.Domain, cfg domains.Config, what string) error {
	now, err := g.domainOf(cmd.Context(), base.Config.UUID.String())
	if err != nil {
		return err
	}
	if !sameConfig(now.Config, base.Config) {
		kept := "(not kept)"
		if b, err := yaml.Marshal(cfg); err == nil {
			if f, err := os.CreateTemp("", "vmledger-edit-*.yaml"); err == nil {
				if _, err := f.Write(b); err == nil && f.Close() == nil {
					kept = "kept in " + f.Name()
				}
			}
		}
		return domains.Errorf(domains.CodeConflict, "domain %s: its config changed while this change was made; nothing defined (the change is %s)", base.Config.Name, kept)
	}
	var res domains.Result
	if err := g.call(cmd.Context(), api.VerbDefine, api.DefineRequest{CommandID: orRandom(cmdID), Config: cfg}, &res); err != nil {
		return err
	}
	return g.printResult(cmd, res, what)
}

// newSetCmd makes setvcpus and setmem: a change of the persistent config
// for the next start, through define (validated there). --live is
// refused: vmledger does not hot-plug vCPUs or balloon memory.
func newSetCmd(g *globals, use, short string, apply func(*domains.Config, string) (bool, error)) *cobra.Command {
	var cmdID string
	var config, live, current bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + ".\n\nThe change goes through define, validated as a config file is (the machine type's\n" +
			"limits); a running guest keeps what it has until it is started again. --config is what this\n" +
			"always does (accepted for virsh habits); --live and --current are refused: vCPUs and memory\n" +
			"are not hot-plugged this way (memory: attach-device with kind memory).",
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if live || current {
				return usagef("%s changes the config for the next start only (--config); the running guest is not changed", cmd.Name())
			}
			d, err := g.domainOf(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			cfg := d.Config.Clone()
			changed, err := apply(&cfg, args[1])
			if err != nil {
				return err
			}
			if !changed {
				return g.printUnchanged(cmd, d)
			}
			return g.defineChanged(cmd, cmdID, d, cfg, "updated for the next start")
		},
	}
	cmd.Flags().BoolVar(&config, "config", false, "change the persistent config (the default, and the only mode)")
	cmd.Flags().BoolVar(&live, "live", false, "refused: see --help")
	cmd.Flags().BoolVar(&current, "current", false, "refused: see --help")
	addCommandID(cmd, &cmdID)
	addJSON(cmd, g)
	return cmd
}

func newSetVCPUsCmd(g *globals) *cobra.Command {
	return newSetCmd(g, "setvcpus DOMAIN COUNT [--config]", "Set the number of vCPUs the domain boots with",
		func(c *domains.Config, arg string) (bool, error) {
			n, err := strconv.ParseUint(arg, 10, 32)
			if err != nil || n == 0 {
				return false, usagef("vcpu count %s: want a positive whole number", domains.Quote(arg))
			}
			changed := c.VCPUs != uint32(n)
			c.VCPUs = uint32(n)
			return changed, nil
		})
}

func newSetMemCmd(g *globals) *cobra.Command {
	return newSetCmd(g, "setmem DOMAIN SIZE [--config]", "Set the memory the domain boots with (SIZE in KiB, or with a unit: 512M, 2G)",
		func(c *domains.Config, arg string) (bool, error) {
			mib, err := parseMemSize(arg)
			if err != nil {
				return false, err
			}
			changed := c.MemoryMiB != mib
			c.MemoryMiB = mib
			return changed, nil
		})
}

// parseMemSize reads a virsh memory size: a number of KiB, or a number
// with a unit (K, KiB, M, MiB, G, GiB, T, TiB; KB, MB, ... are powers of
// 1000, as virsh has them), which must come to a whole number of MiB.
func parseMemSize(s string) (uint64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("memory size %s: want a positive number, in KiB or with a unit (512M, 2G)", domains.Quote(s))
	}
	var mult uint64
	switch strings.ToLower(unit) {
	case "", "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	case "kb":
		mult = 1000
	case "mb":
		mult = 1000 * 1000
	case "gb":
		mult = 1000 * 1000 * 1000
	default:
		return 0, usagef("memory size %s: unknown unit %s (K, M, G, T; KiB by default)", domains.Quote(s), domains.Quote(unit))
	}
	if n > (1<<62)/mult {
		return 0, usagef("memory size %s: too large", domains.Quote(s))
	}
	total := n * mult
	if total%(1<<20) != 0 {
		return 0, usagef("memory size %s: must be a whole number of MiB (%d bytes is not)", domains.Quote(s), total)
	}
	return total >> 20, nil
}

// listFlags are list's virsh flags: --all (every domain, which is what
// list shows anyway), --name and --uuid (one column only), and the check
// of --state against the states there are.
type listFlags struct {
	all, name, uuid bool
}

func addListFlags(cmd *cobra.Command) *listFlags {
	f := &listFlags{}
	cmd.Flags().BoolVar(&f.all, "all", false, "every domain, active or not (what list shows without it too; for virsh habits)")
	cmd.Flags().BoolVar(&f.name, "name", false, "print only the names, one a line")
	cmd.Flags().BoolVar(&f.uuid, "uuid", false, "print only the UUIDs, one a line (with --name: UUID and name)")
	return f
}

// checkState refuses a state that does not exist, naming those that do.
func checkState(state string) error {
	if state == "" {
		return nil
	}
	if _, err := domains.ParseState(state); err != nil {
		return usageError{err}
	}
	return nil
}

// print writes the short forms; ok is false when the table is wanted.
func (f *listFlags) print(w io.Writer, rep api.ListReply) (ok bool, err error) {
	if !f.name && !f.uuid {
		return false, nil
	}
	for _, d := range rep.Domains {
		switch {
		case f.name && f.uuid:
			_, err = fmt.Fprintf(w, "%s %s\n", d.UUID, d.Name)
		case f.uuid:
			_, err = fmt.Fprintln(w, d.UUID)
		default:
			_, err = fmt.Fprintln(w, d.Name)
		}
		if err != nil {
			return true, err
		}
	}
	return true, nil
}
