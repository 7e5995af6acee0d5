package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/migrate"
)

// Save, restore, managed save and save images (docs/cli.md, "Save and
// restore").

// absOnAgent makes a path absolute as the user meant it; the agent then
// confines it to its allowed directories on its own host.
func absOnAgent(p string) (string, error) {
	if filepath.IsAbs(p) {
		return p, nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("%s: %w", p, err)
	}
	return abs, nil
}

type jobFlags struct {
	cmdID    string
	detach   bool
	noBar    bool
	running  bool
	paused   bool
	compress string
}

func (f *jobFlags) add(cmd *cobra.Command, g *globals, state bool) {
	addCommandID(cmd, &f.cmdID)
	addJSON(cmd, g)
	cmd.Flags().BoolVar(&f.detach, "detach", false, "return once the job has started (follow it with job info --watch)")
	cmd.Flags().BoolVar(&f.noBar, "no-progress", false, "no progress bar on stderr")
	if state {
		cmd.Flags().BoolVar(&f.running, "running", false, "the restored guest runs (default: as it was when saved)")
		cmd.Flags().BoolVar(&f.paused, "paused", false, "the restored guest stays paused")
	}
}

func newSaveCmd(g *globals) *cobra.Command {
	var f jobFlags
	cmd := &cobra.Command{
		Use:   "save DOMAIN FILE [--compress zstd|snappy|none] [--running|--paused]",
		Short: "Save a running or paused domain's state into an image and stop it (virsh save)",
		Long: `Save the domain's memory and device state into FILE and stop it
(stopped, saved). FILE is a path on the agent's host, inside a directory
the agent allows (agent --allow-dir; default <state-dir>/images); it must
not exist. The image holds the domain's config as recorded (clock
adjustment and hot-plugged devices included) and QEMU's migration stream,
framed, compressed (zstd by default) and checksummed (docs/migrate.md).
QEMU's bandwidth cap is lifted for the save, as libvirt does.

The save is an asynchronous job: a progress bar (stderr) follows it until
it ends; job abort DOMAIN cancels it, and the guest goes on as it was.
--running/--paused set the state restore leaves the guest in.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.running && f.paused {
				return usagef("--running and --paused exclude each other")
			}
			path, err := absOnAgent(args[1])
			if err != nil {
				return err
			}
			req := api.SaveRequest{CommandID: orRandom(f.cmdID), Domain: args[0], Path: path, Compression: f.compress, Running: f.running, Paused: f.paused}
			return g.runJob(cmd, f, api.VerbSave, req, "saved to "+path)
		},
	}
	f.add(cmd, g, true)
	cmd.Flags().StringVar(&f.compress, "compress", "zstd", "compression of the image: zstd, snappy or none")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var f jobFlags
	cmd := &cobra.Command{
		Use:   "restore FILE [--running|--paused]",
		Short: "Restore a domain from a save image (virsh restore)",
		Long: `Restore the domain saved in FILE (a path on the agent's host, inside an
allowed directory). The whole image is verified first; a damaged image or
a config that define would refuse changes nothing. The domain is then
defined from the image's config (or updated: it must be shut off), QEMU
starts with -incoming defer on a fresh all-zero memory file and takes the
stream, and started (restored) is recorded. Any agent can restore an
image, not only the one that saved it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.running && f.paused {
				return usagef("--running and --paused exclude each other")
			}
			path, err := absOnAgent(args[0])
			if err != nil {
				return err
			}
			req := api.RestoreRequest{CommandID: orRandom(f.cmdID), Path: path, Running: f.running, Paused: f.paused}
			return g.runJob(cmd, f, api.VerbRestore, req, "restored from "+path)
		},
	}
	f.add(cmd, g, true)
	return cmd
}

func newManagedSaveCmd(g *globals) *cobra.Command {
	var f jobFlags
	cmd := &cobra.Command{
		Use:   "managedsave DOMAIN [--compress zstd|snappy|none] [--running|--paused]",
		Short: "Save the domain into the agent's own place; the next start restores it (virsh managedsave)",
		Long: `Save the domain as save does, into <state-dir>/managedsave/<uuid>.save.
The next start restores it (and removes the image); start --force-boot
discards it and boots; managedsave-remove discards it; list shows which
domains have one.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.running && f.paused {
				return usagef("--running and --paused exclude each other")
			}
			req := api.SaveRequest{CommandID: orRandom(f.cmdID), Domain: args[0], Compression: f.compress, Running: f.running, Paused: f.paused}
			return g.runJob(cmd, f, api.VerbManagedSave, req, "saved (managed)")
		},
	}
	f.add(cmd, g, true)
	cmd.Flags().StringVar(&f.compress, "compress", "zstd", "compression of the image: zstd, snappy or none")
	return cmd
}

func newManagedSaveRemoveCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "managedsave-remove DOMAIN",
		Short: "Discard the domain's managed save image (virsh managedsave-remove)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res domains.Result
			if err := g.call(cmd.Context(), api.VerbManagedSaveRemove, api.SaveRequest{Domain: args[0]}, &res); err != nil {
				return err
			}
			return g.printResult(cmd, res, "has no managed save image now")
		},
	}
	addJSON(cmd, g)
	return cmd
}

// runJob sends a command that starts an asynchronous job and, unless
// --detach, follows it to its end.
func (g *globals) runJob(cmd *cobra.Command, f jobFlags, verb string, req any, what string) error {
	var res domains.Result
	if err := g.call(cmd.Context(), verb, req, &res); err != nil {
		return err
	}
	if f.detach || res.Job == "" {
		return g.printResult(cmd, res, what)
	}
	end, err := g.followJob(cmd.Context(), cmd.ErrOrStderr(), res, !f.noBar && !g.json)
	if err != nil {
		return err
	}
	if err := jobFailure(end, res); err != nil {
		return err
	}
	var d domains.Domain
	if err := g.call(cmd.Context(), api.VerbInfo, api.DomainRequest{Domain: res.Domain.String()}, &d); err != nil {
		return err
	}
	res.State = d.State
	res.Seqs = append(res.Seqs, end.Seq)
	return g.printResult(cmd, res, what)
}

// jobFailure is the error for a job that ended in job-failed, nil for one
// that completed.
func jobFailure(end domains.Event, res domains.Result) error {
	if end.Type != domains.TypeJobFailed {
		return nil
	}
	p, _ := end.Payload.(domains.JobFailed)
	return domains.Errorf(domains.CodeInternal, "%s job %s of domain %s failed (%s): %s", p.Kind, p.ID, res.Name, p.Reason, p.Error)
}

// followJob shows the job's progress (a bar on w, fed from
// vmledger.job.<host>.<uuid>.progress) until its end is in the log, and
// returns that event (job-completed or job-failed).
func (g *globals) followJob(ctx context.Context, w io.Writer, res domains.Result, bar bool) (domains.Event, error) {
	nc, c, err := g.dial(ctx)
	if err != nil {
		return domains.Event{}, err
	}
	defer nc.Close()
	reports := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(bus.JobProgressSubject(g.host, res.Domain), reports)
	if err != nil {
		return domains.Event{}, domains.Errorf(domains.CodeUnavailable, "subscribe to job progress: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes next
	var pb *progressbar.ProgressBar
	if bar {
		pb = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("job "+res.Job), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
		defer pb.Exit() //nolint:errcheck // a terminal bar
	}
	after := uint64(0)
	if n := len(res.Seqs); n > 0 {
		after = res.Seqs[n-1]
	}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case m := <-reports:
			var j domains.JobInfo
			if pb == nil || json.Unmarshal(m.Data, &j) != nil || j.ID != res.Job || j.Progress == nil {
				continue
			}
			if p := j.Progress; p.Total > 0 && pb.GetMax64() != int64(p.Total) {
				pb.ChangeMax64(int64(p.Total))
			}
			desc := string(j.Kind) + " " + j.Progress.Phase
			if j.Progress.Pass > 0 { // a live migration's RAM pass
				desc += fmt.Sprintf(" pass %d", j.Progress.Pass)
			}
			pb.Describe(desc)
			_ = pb.Set64(int64(j.Progress.Done))
			continue
		case <-tick.C:
		case <-ctx.Done():
			return domains.Event{}, ctx.Err()
		}
		// The job's end is a fact in the log: look for it there.
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		page, err := c.History(cctx, bus.HistoryRequest{After: after, Domain: res.Domain, Types: []domains.Type{domains.TypeJobCompleted, domains.TypeJobFailed}})
		cancel()
		if err != nil {
			return domains.Event{}, err
		}
		after = page.Next
		if i := slices.IndexFunc(page.Events, func(e domains.Event) bool { return jobIDOf(e) == res.Job }); i >= 0 {
			if pb != nil {
				_ = pb.Finish()
			}
			return page.Events[i], nil
		}
	}
}

func jobIDOf(e domains.Event) string {
	switch p := e.Payload.(type) {
	case domains.JobCompleted:
		return p.ID
	case domains.JobFailed:
		return p.ID
	}
	return ""
}

func newSaveImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save-image",
		Short: "Read or change a save image offline: info (virsh save-image-dumpxml), define (virsh save-image-define)",
	}
	cmd.AddCommand(newSaveImageInfoCmd(), newSaveImageDefineCmd())
	return cmd
}

// imageInfo is save-image info's answer.
type imageInfo struct {
	Path        string          `json:"path"`
	Version     uint32          `json:"version"`
	WasRunning  bool            `json:"was_running"`
	Compression string          `json:"compression"`
	ChunkSize   int             `json:"chunk_size"`
	ConfigBytes int             `json:"config_bytes"`
	StreamBytes int64           `json:"stream_bytes"`
	Chunks      int64           `json:"chunks"`
	StreamXXH64 string          `json:"stream_xxh64"`
	Config      json.RawMessage `json:"config"`
}

func newSaveImageInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Verify a save image and show its header and config (no agent needed)",
		Long: `Read the whole image at FILE, check every part of it (as restore does
first) and print its header and the domain config inside. A damaged or
unfinished image is reported with the part and offset (exit 6).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := migrate.VerifyFile(cmd.Context(), args[0])
			if err != nil {
				return corruptError{err}
			}
			h := s.Header
			info := imageInfo{Path: args[0], Version: h.Version, WasRunning: h.WasRunning, Compression: h.Compression.String(),
				ChunkSize: h.ChunkSize, ConfigBytes: h.ConfigLen, StreamBytes: s.StreamBytes, Chunks: s.Chunks,
				StreamXXH64: fmt.Sprintf("%016x", s.StreamXXH64), Config: json.RawMessage(s.Config)}
			if !json.Valid(s.Config) {
				info.Config, _ = json.Marshal(string(s.Config))
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			t := newTable(cmd.OutOrStdout())
			fmt.Fprintf(t, "Image:\t%s (verified)\nVersion:\t%d\nWas running:\t%v\nCompression:\t%s\nChunk size:\t%s\nStream:\t%s in %d chunks, xxh64 %s\n",
				args[0], h.Version, h.WasRunning, info.Compression, bytesText(uint64(h.ChunkSize)), bytesText(uint64(s.StreamBytes)), s.Chunks, info.StreamXXH64)
			_ = t.Flush()
			fmt.Fprintln(cmd.OutOrStdout(), "Config:")
			return printJSON(cmd.OutOrStdout(), info.Config)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSaveImageDefineCmd() *cobra.Command {
	var running, paused, asJSON bool
	cmd := &cobra.Command{
		Use:   "define FILE CONFIG [--running|--paused]",
		Short: "Replace the domain config inside a save image (virsh save-image-define)",
		Long: `Replace the config inside the save image FILE with CONFIG (JSON or YAML,
'-' for stdin), read and checked as define checks it. As with virsh
save-image-define, the new config must describe the same guest: the same
UUID and name, machine, vCPUs and memory (the saved state depends on them);
the rest (the clock, disk paths, ...) may change. The image is verified
in full and rewritten beside itself under the partial magic; only a
finished image replaces the old one. --running/--paused change the state
restore leaves the guest in.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if running && paused {
				return usagef("--running and --paused exclude each other")
			}
			s, err := migrate.VerifyFile(cmd.Context(), args[0])
			if err != nil {
				return corruptError{err}
			}
			old, err := domains.DecodeConfig(s.Config)
			if err != nil {
				return corruptError{fmt.Errorf("%s: the image's config: %w", args[0], err)}
			}
			cfg, err := readConfig(args[1], cmd.InOrStdin())
			if err != nil {
				return err
			}
			if cfg.UUID == uuid.Nil {
				cfg.UUID = old.UUID // a config without one keeps the image's
			}
			cfg = cfg.Normalize()
			if err := cfg.Validate(); err != nil {
				return usagef("%s: %w", args[1], err)
			}
			if err := compatible(old.Normalize(), cfg); err != nil {
				return usagef("%s does not fit the saved guest: %w", args[1], err)
			}
			raw, err := json.Marshal(cfg)
			if err != nil {
				return err
			}
			wasRunning := s.Header.WasRunning
			if running || paused {
				wasRunning = running
			}
			if _, err := migrate.Rewrite(args[0], raw, wasRunning); err != nil {
				return domains.Errorf(domains.CodeInternal, "%w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"image": args[0], "name": cfg.Name, "uuid": cfg.UUID, "was_running": wasRunning})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Save image %s: config of domain %s replaced\n", args[0], cfg.Name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&running, "running", false, "restore leaves the guest running")
	cmd.Flags().BoolVar(&paused, "paused", false, "restore leaves the guest paused")
	return cmd
}

// compatible is save-image define's check that a new config describes the
// guest whose state the image holds (libvirt's ABI stability check, in
// small).
func compatible(old, cfg domains.Config) error {
	switch {
	case cfg.UUID != old.UUID:
		return fmt.Errorf("uuid %s, the image's domain is %s", cfg.UUID, old.UUID)
	case cfg.Name != old.Name:
		return fmt.Errorf("name %q, the image's domain is %q", cfg.Name, old.Name)
	case cfg.Machine != old.Machine:
		return fmt.Errorf("machine %q, the image's is %q", cfg.Machine, old.Machine)
	case cfg.VCPUs != old.VCPUs:
		return fmt.Errorf("%d vCPUs, the image's guest has %d", cfg.VCPUs, old.VCPUs)
	case cfg.MemoryMiB != old.MemoryMiB:
		return fmt.Errorf("%d MiB of memory, the image's guest has %d", cfg.MemoryMiB, old.MemoryMiB)
	case len(cfg.Disks) != len(old.Disks) || len(cfg.Devices) != len(old.Devices):
		return fmt.Errorf("another number of disks or devices than the image's guest")
	}
	return nil
}
