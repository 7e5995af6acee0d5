package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// migrate (docs/cli.md, "Live migration"; docs/migration.md).

func newMigrateCmd(g *globals) *cobra.Command {
	var f jobFlags
	var to, listen string
	var bandwidth int64
	var downtime time.Duration
	var keep bool
	cmd := &cobra.Command{
		Use:   "migrate DOMAIN --to HOST [--listen ADDR] [--bandwidth MIB/S] [--max-downtime DURATION] [--keep-source]",
		Short: "Move a running domain to another agent's host, live (virsh migrate --live)",
		Long: `Migrate the domain from the agent of --host (the source) to the agent of
--to (the destination), both on the same NATS cluster. The source agent
drives the phases of docs/migration.md: begin, prepare (the destination
starts QEMU with -incoming on a fresh all-zero memory file and the
domain's live config, clock adjustment and hot-plugged devices included,
and listens on --listen, an IP address on its host), perform (QEMU
streams to QEMU over TCP while the guest runs), finish (the destination
takes ownership and runs the guest: started, migrated) and confirm (the
source's QEMU stops: stopped, migrated). Every transition is a
migration-state event in the log of the host that took it.

The definition moves: the source undefines the domain, unless
--keep-source (it then keeps a shut-off definition it does not own and
cannot start). The migration is an asynchronous job on the source: a
progress bar (stderr) shows the RAM pass and bytes; job abort DOMAIN
cancels it before the hand-off, and the guest runs on at the source.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usagef("--to HOST is required")
			}
			if bandwidth < 0 || downtime < 0 {
				return usagef("--bandwidth and --max-downtime must not be negative")
			}
			req := api.MigrateRequest{CommandID: orRandom(f.cmdID), Domain: args[0], To: to, Listen: listen,
				Bandwidth: bandwidth << 20, MaxDowntimeMs: downtime.Milliseconds(), KeepSource: keep}
			var res domains.Result
			if err := g.call(cmd.Context(), api.VerbMigrate, req, &res); err != nil {
				return err
			}
			if f.detach || res.Job == "" {
				return g.printResult(cmd, res, "migrating to "+to)
			}
			end, err := g.followJob(cmd.Context(), cmd.ErrOrStderr(), res, !f.noBar && !g.json)
			if err != nil {
				return err
			}
			if err := jobFailure(end, res); err != nil {
				return err
			}
			res.Seqs = append(res.Seqs, end.Seq)
			if g.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Domain %s migrated to %s (uuid %s, job %s)\n", res.Name, to, res.Domain, res.Job)
			return nil
		},
	}
	f.add(cmd, g, false)
	fl := cmd.Flags()
	fl.StringVar(&to, "to", "", "the destination agent's host name")
	fl.StringVar(&listen, "listen", "", "IP address on the destination's host where its QEMU takes the stream (default 127.0.0.1)")
	fl.Int64Var(&bandwidth, "bandwidth", 0, "cap the stream at this many MiB/s (0: no cap)")
	fl.DurationVar(&downtime, "max-downtime", 0, "the longest pause QEMU may take to send the last dirty pages (default 300ms)")
	fl.BoolVar(&keep, "keep-source", false, "keep the (shut off, not owned) definition on the source")
	return cmd
}
