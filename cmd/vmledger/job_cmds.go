package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "A domain's running job: info (virsh domjobinfo), abort (virsh domjobabort)",
	}
	cmd.AddCommand(newJobInfoCmd(g), newJobAbortCmd(g))
	return cmd
}

func newJobInfoCmd(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "info DOMAIN",
		Short: "Show the domain's running job and its progress (--watch: follow the progress until the job ends)",
		Long: `Show the job that is changing the domain: a command (start, define, ...)
or an asynchronous job (save, restore, migrate, dump) with its last
progress report. "no job" (JSON: {"job": null}) when there is none.

--watch follows an asynchronous job's progress as the agent publishes it
on vmledger.job.<host>.<uuid>.progress, one line per report, until the
job has ended.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !watch {
				var r api.JobReply
				if err := g.call(cmd.Context(), api.VerbJobInfo, api.DomainRequest{Domain: args[0]}, &r); err != nil {
					return err
				}
				if g.json {
					return printJSON(cmd.OutOrStdout(), r)
				}
				printJob(cmd.OutOrStdout(), r.Job)
				return nil
			}
			return g.watchJob(cmd.Context(), cmd.OutOrStdout(), args[0])
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the job's progress until it ends")
	addJSON(cmd, g)
	return cmd
}

func newJobAbortCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "abort DOMAIN",
		Short: "Abort the domain's asynchronous job and wait until it has ended (recorded as job-failed, aborted)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j domains.JobInfo
			if err := g.call(cmd.Context(), api.VerbJobAbort, api.DomainRequest{Domain: args[0]}, &j); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), j)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Job %s (%s) of domain %s aborted\n", j.ID, j.Kind, args[0])
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printJob(w io.Writer, j *domains.JobInfo) {
	if j == nil {
		fmt.Fprintln(w, "no job")
		return
	}
	kind := "synchronous"
	if j.Async {
		kind = "asynchronous"
	}
	fmt.Fprintf(w, "Job:        %s\nKind:       %s (%s)\nStarted:    %s\n", j.ID, j.Kind, kind, fmtTime(j.Started))
	if j.CommandID != "" {
		fmt.Fprintf(w, "Command ID: %s\n", j.CommandID)
	}
	if p := j.Progress; p != nil {
		fmt.Fprintf(w, "Phase:      %s\nProgress:   %s\nRate:       %s/s\n", p.Phase, progressText(*p), bytesText(p.Rate))
		if p.Pass > 0 { // a live migration
			fmt.Fprintf(w, "Pass:       %d (%s left in it, %d pages dirtied/s)\n", p.Pass, bytesText(p.Remaining), p.DirtyRate)
		}
	}
}

func progressText(p domains.JobProgress) string {
	if p.Total == 0 {
		return bytesText(p.Done)
	}
	return fmt.Sprintf("%s of %s (%.1f%%)", bytesText(p.Done), bytesText(p.Total), 100*float64(p.Done)/float64(p.Total))
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// watchJob prints the job's progress reports until job info says the job
// has ended. Subscribing first, then asking, misses nothing in between.
func (g *globals) watchJob(ctx context.Context, w io.Writer, ref string) error {
	nc, c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	call := func(verb string, v any) error {
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		return c.Call(cctx, verb, api.DomainRequest{Domain: ref}, v)
	}
	var d domains.Domain
	if err := call(api.VerbInfo, &d); err != nil {
		return err
	}
	reports := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(bus.JobProgressSubject(g.host, d.Config.UUID), reports)
	if err != nil {
		return domains.Errorf(domains.CodeUnavailable, "subscribe to job progress: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes next
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var r api.JobReply
		if err := call(api.VerbJobInfo, &r); err != nil {
			return err
		}
		if r.Job == nil || !r.Job.Async {
			fmt.Fprintln(w, "no asynchronous job running")
			return nil
		}
		select {
		case m := <-reports:
			var j domains.JobInfo
			if json.Unmarshal(m.Data, &j) != nil || j.Progress == nil {
				continue
			}
			if g.json {
				fmt.Fprintln(w, string(m.Data))
				continue
			}
			fmt.Fprintf(w, "%s %s: %s, %s/s\n", j.Kind, j.Progress.Phase, progressText(*j.Progress), bytesText(j.Progress.Rate))
		case <-tick.C: // re-ask whether the job still runs
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
