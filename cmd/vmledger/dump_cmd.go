package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// errJobEnded stops Follow once the dump job's end is seen.
var errJobEnded = errors.New("job ended")

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
			var bar io.Writer = cmd.ErrOrStderr()
			if noProgress || g.json {
				bar = nil
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

// runDump starts the job, then follows the domain's events from the
// job-started one (history first, so nothing is missed) until the job's
// end, drawing its progress on bar meanwhile.
func (g *globals) runDump(ctx context.Context, w, bar io.Writer, r api.DumpRequest) error {
	nc, c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	var res domains.Result
	err = c.Call(cctx, api.VerbDump, r, &res)
	cancel()
	if err != nil {
		return err
	}
	if res.Job == "" || len(res.Seqs) == 0 {
		return domains.Errorf(domains.CodeInternal, "dump: the agent's answer names no job")
	}
	if bar != nil {
		stop, err := showProgress(nc, bar, bus.JobProgressSubject(g.host, res.Domain), res.Job)
		if err != nil {
			return err
		}
		defer stop()
	}
	out := dumpOutcome{Job: res.Job, Domain: res.Name}
	var failed *domains.JobFailed
	err = c.Follow(ctx, bus.FollowOptions{After: res.Seqs[len(res.Seqs)-1] - 1, Domain: res.Domain}, func(e domains.Event) error {
		switch p := e.Payload.(type) {
		case domains.DumpCompleted:
			out.Completed = &p
		case domains.TransferFailed:
			if p.Kind == domains.TypeDumpFailed {
				out.Failed = &p
			}
		case domains.JobCompleted:
			if p.ID == res.Job {
				return errJobEnded
			}
		case domains.JobFailed:
			if p.ID == res.Job {
				failed = &p
				return errJobEnded
			}
		}
		return nil
	})
	if !errors.Is(err, errJobEnded) {
		return err
	}
	if bar != nil {
		fmt.Fprintln(bar)
	}
	if g.json {
		if err := printJSON(w, out); err != nil {
			return err
		}
	}
	if failed != nil {
		code := domains.CodeInternal
		if failed.Reason != domains.JobError {
			code = domains.CodeUnavailable
		}
		return domains.Errorf(code, "dump of %s failed (%s): %s", res.Name, failed.Reason, failed.Error)
	}
	if !g.json && out.Completed != nil {
		fmt.Fprintf(w, "Domain %s dumped to %s (%s, %s, %.1f s; job %s)\n", res.Name, out.Completed.Path,
			out.Completed.Format, bytesText(out.Completed.Bytes), float64(out.Completed.DurationMS)/1000, res.Job)
	}
	return nil
}

// showProgress draws the job's progress reports as a bar until stop.
func showProgress(nc *nats.Conn, w io.Writer, subject, jobID string) (stop func(), err error) {
	pb := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription("dump"), progressbar.OptionThrottle(0), progressbar.OptionClearOnFinish())
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var j domains.JobInfo
		if json.Unmarshal(m.Data, &j) != nil || j.ID != jobID || j.Progress == nil {
			return
		}
		if j.Progress.Total > 0 && pb.GetMax64() != int64(j.Progress.Total) {
			pb.ChangeMax64(int64(j.Progress.Total))
		}
		_ = pb.Set64(int64(j.Progress.Done))
	})
	if err != nil {
		return nil, domains.Errorf(domains.CodeUnavailable, "subscribe to job progress: %w", err)
	}
	return func() { _ = sub.Unsubscribe(); _ = pb.Finish() }, nil
}
