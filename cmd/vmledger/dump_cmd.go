package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// dumpOutcome is what `dump --json` prints.
type dumpOutcome struct {
	Job       string                  `json:"job"`
	Domain    string                  `json:"domain"`
	Completed *domains.DumpCompleted  `json:"completed,omitempty"`
	Failed    *domains.TransferFailed `json:"failed,omitempty"`
}

func newDumpCmd(g *globals) *cobra.Command {
	var r api.DumpRequest
	var live, crash, reset, noProgress bool
	cmd := &cobra.Command{
		Use:   "dump DOMAIN FILE",
		Short: "Write a core dump of a running domain (virsh dump): ELF or kdump-compressed, as an asynchronous job",
		Long: `Write a core dump of the domain's guest memory and vCPU registers to FILE,
on the agent's host, as an asynchronous job (job info / job abort see and
stop it). FILE must lie in one of the agent's allowed directories
(agent --allow-dir; default <state-dir>/images) and not exist yet; it is
written under a temporary name and appears only once complete.

The guest is paused while the dump is taken and runs again after if it ran
(as virsh dump): --live does not pause it (the dump may then be torn),
--crash stops it (stopped, crashed) after, --reset resets it after.

--format: elf, kdump-zlib, kdump-snappy, kdump-zstd (default). --flattened
writes makedumpfile's flattened stream (kdump only; makedumpfile -R
rebuilds the plain file). --via-qemu has QEMU write its own dump
(dump-guest-memory: elf or kdump-zlib, not flattened) instead of vmledger's
parallel writer. Events: dump-started, dump-completed (path, format, bytes,
duration_ms), dump-failed. A progress bar on stderr follows the job.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{live, crash, reset} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usagef("--live, --crash and --reset exclude each other")
			}
			switch {
			case live:
				r.After = domains.DumpLive
			case crash:
				r.After = domains.DumpCrash
			case reset:
				r.After = domains.DumpReset
			}
			path, err := filepath.Abs(args[1])
			if err != nil {
				return usagef("FILE %s: %v", domains.Quote(args[1]), err)
			}
			r.Domain, r.Path, r.CommandID = args[0], path, orRandom(r.CommandID)
			var bar io.Writer
			if !noProgress && !g.json {
				bar = cmd.ErrOrStderr()
			}
			return g.runDump(cmd.Context(), cmd.OutOrStdout(), bar, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Format, "format", domains.DumpKdumpZstd, "elf, kdump-zlib, kdump-snappy or kdump-zstd")
	f.BoolVar(&r.Flattened, "flattened", false, "kdump only: makedumpfile's flattened stream")
	f.BoolVar(&r.ViaQEMU, "via-qemu", false, "have QEMU write the dump (dump-guest-memory; elf or kdump-zlib)")
	f.BoolVar(&live, "live", false, "do not pause the guest while dumping")
	f.BoolVar(&crash, "crash", false, "stop the guest (crashed) after the dump")
	f.BoolVar(&reset, "reset", false, "reset the guest after the dump")
	f.BoolVar(&noProgress, "no-progress", false, "no progress bar")
	addCommandID(cmd, &r.CommandID)
	addJSON(cmd, g)
	return cmd
}

// runDump starts the job and follows it to its end (a progress bar on
// bar, when set), then reads the dump's outcome from the log.
func (g *globals) runDump(ctx context.Context, w, bar io.Writer, r api.DumpRequest) error {
	var res domains.Result
	if err := g.call(ctx, api.VerbDump, r, &res); err != nil {
		return err
	}
	if res.Job == "" || len(res.Seqs) == 0 {
		return domains.Errorf(domains.CodeInternal, "dump: the agent's answer names no job")
	}
	end, err := g.followJob(ctx, bar, res, bar != nil)
	if err != nil {
		return err
	}
	out, err := g.dumpOutcome(ctx, res, end.Seq)
	if err != nil {
		return err
	}
	if g.json {
		if err := printJSON(w, out); err != nil {
			return err
		}
	}
	if p, failed := end.Payload.(domains.JobFailed); failed {
		code := domains.CodeInternal
		if p.Reason != domains.JobError {
			code = domains.CodeUnavailable
		}
		return domains.Errorf(code, "dump of %s failed (%s): %s", res.Name, p.Reason, p.Error)
	}
	if !g.json && out.Completed != nil {
		fmt.Fprintf(w, "Domain %s dumped to %s (%s, %s, %.1f s; job %s)\n", res.Name, out.Completed.Path,
			out.Completed.Format, bytesText(out.Completed.Bytes), float64(out.Completed.DurationMS)/1000, res.Job)
	}
	return nil
}

// dumpOutcome reads the job's dump-completed or dump-failed from the log
// (between its job-started and its end, at seq end).
func (g *globals) dumpOutcome(ctx context.Context, res domains.Result, end uint64) (dumpOutcome, error) {
	out := dumpOutcome{Job: res.Job, Domain: res.Name}
	nc, c, err := g.dial(ctx)
	if err != nil {
		return out, err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	page, err := c.History(cctx, bus.HistoryRequest{After: res.Seqs[len(res.Seqs)-1], Domain: res.Domain,
		Types: []domains.Type{domains.TypeDumpCompleted, domains.TypeDumpFailed}})
	if err != nil {
		return out, err
	}
	for _, e := range page.Events {
		if e.Seq > end {
			break
		}
		switch p := e.Payload.(type) {
		case domains.DumpCompleted:
			out.Completed = &p
		case domains.TransferFailed:
			out.Failed = &p
		}
	}
	return out, nil
}
