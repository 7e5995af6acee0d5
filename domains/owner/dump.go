package owner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/domains"
)

// The dump job (virsh dump; docs/coredump.md, "vmledger dump"). The guest
// is paused while vmledger writes the dump from its RAM file (or QEMU
// writes its own, --via-qemu), into a temporary file beside the target
// that is renamed into place only once complete.

// memoryAccess is what a dump needs of a guest (hypervisor/qemu's Guest).
type memoryAccess interface {
	// RAMFile is the guest's memory-backend-file.
	RAMFile() string
	// CPUStates reads each vCPU's registers.
	CPUStates(ctx context.Context) ([]coredump.CPUState, error)
}

// dimmAccess lists the guest's hot-plugged memory (DIMMs), each in a
// file of its own, which a dump holds at the DIMM's addresses.
type dimmAccess interface {
	DIMMs(ctx context.Context) ([]coredump.FileRange, error)
}

// qemuDumper is QEMU's own dump-guest-memory, into f.
type qemuDumper interface {
	QEMUDump(ctx context.Context, f *os.File, format string, progress func(done, total uint64)) error
}

// Dump writes a core dump of a running, paused or crashed domain to o.Path, which
// must lie in an allowed directory and not exist yet. It returns once the
// job has started (Result.Job); the job records dump-started, then
// dump-completed or dump-failed. Bad options and refused paths change
// nothing.
func (s *Service) Dump(ctx context.Context, cmdID, ref string, o domains.DumpOptions) (domains.Result, error) {
	if err := o.Validate(); err != nil {
		return domains.Result{}, err
	}
	// A retry answers from the command table, although the first run's
	// file exists now (save.go).
	if res, ok, err := s.replayAsync(ctx, cmdID, ref, domains.JobDump, o); ok {
		return res, err
	}
	d, err := s.Get(ref)
	if err != nil {
		return domains.Result{}, err
	}
	// A crashed guest kept in guest-panicked (on_crash preserve) can be
	// dumped too, as with virsh.
	if d.State != domains.StateRunning && d.State != domains.StatePaused && d.State != domains.StateCrashed {
		return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is not running (%s)", d.Config.Name, d.State)
	}
	path, err := s.resolve(o.Path, true)
	if err != nil {
		return domains.Result{}, fmt.Errorf("dump: %w", err)
	}
	return s.RunAsync(ctx, cmdID, ref, domains.JobDump, o, func(ctx context.Context, j *Job) error {
		return s.runDump(ctx, j, path, o)
	})
}

func (s *Service) runDump(ctx context.Context, j *Job, path string, o domains.DumpOptions) error {
	g := j.Guest()
	mem, ok := g.(memoryAccess)
	if !ok {
		return domains.Errorf(domains.CodeUnavailable, "dump: the guest's memory cannot be read")
	}
	lc, _ := g.(lifecycle)
	d := j.Domain()
	paused := false
	if d.State == domains.StateRunning && o.After != domains.DumpLive {
		if lc == nil {
			return domains.Errorf(domains.CodeUnavailable, "dump: the guest cannot be paused")
		}
		if err := j.act(ctx, func() error { return lc.Pause(ctx) }, domains.Paused{Reason: domains.PauseDump}); err != nil {
			return fmt.Errorf("dump: pause: %w", err)
		}
		paused = true
	}
	// undo resumes a guest the dump paused, whatever ended the job.
	undo := func() {
		if !paused {
			return
		}
		uctx, cancel := undoCtx(ctx)
		defer cancel()
		_ = j.act(uctx, func() error { return lc.Resume(uctx) }, domains.Resumed{Reason: domains.PauseDump})
	}
	if err := j.Record(ctx, domains.TransferStarted{Kind: domains.TypeDumpStarted, Path: path, Format: o.Format}); err != nil {
		undo()
		return err
	}
	t0 := time.Now()
	size, err := writeDump(ctx, j, mem, path, o)
	if err != nil {
		rctx, cancel := undoCtx(ctx)
		defer cancel()
		_ = j.Record(rctx, domains.TransferFailed{Kind: domains.TypeDumpFailed, Path: path, Error: err.Error()})
		undo()
		return err
	}
	// From here on the dump is complete: the events say so whatever
	// becomes of the guest after.
	rctx, cancel := undoCtx(ctx)
	defer cancel()
	if err := j.Record(rctx, domains.DumpCompleted{Path: path, Format: o.Format, Bytes: size,
		DurationMS: uint64(time.Since(t0).Milliseconds())}); err != nil {
		undo()
		return err
	}
	switch o.After {
	case domains.DumpCrash:
		return j.stopCrashed(rctx, "after a dump (--crash)")
	case domains.DumpReset:
		if lc == nil {
			undo()
			return domains.Errorf(domains.CodeUnavailable, "dump: the guest cannot be reset")
		}
		if err := j.act(rctx, func() error { return lc.Reset(rctx) }, domains.Reset{Guest: false, Reason: "dump"}); err != nil {
			undo()
			return fmt.Errorf("dump: reset after: %w", err)
		}
	}
	undo()
	return nil
}

// writeDump writes the dump under a temporary name in path's directory
// and renames it into place once complete and synced; on any failure the
// temporary file is removed. It returns the file's size.
func writeDump(ctx context.Context, j *Job, mem memoryAccess, path string, o domains.DumpOptions) (uint64, error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		return 0, fmt.Errorf("dump: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	progress := func(done, total uint64) {
		j.Progress(domains.JobProgress{Phase: "memory", Done: done, Total: total})
	}
	if o.ViaQEMU {
		qd, ok := j.Guest().(qemuDumper)
		if !ok {
			return 0, domains.Errorf(domains.CodeUnavailable, "dump: this guest has no QEMU dump")
		}
		err = qd.QEMUDump(ctx, tmp, o.Format, progress)
	} else {
		err = writeOwn(ctx, j.Domain().Config, mem, tmp, o, progress)
	}
	if err == nil {
		err = tmp.Sync()
	}
	var size int64
	if err == nil {
		size, err = tmp.Seek(0, 2)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err() // an abort that came too late to stop the writer still counts
	}
	if err == nil {
		// RENAME_NOREPLACE: a file made at path meanwhile is not replaced.
		err = unix.Renameat2(unix.AT_FDCWD, tmp.Name(), unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, c)
		}
		return 0, fmt.Errorf("dump: %w", err)
	}
	done = true
	if df, derr := os.Open(dir); derr == nil {
		_ = df.Sync() // the rename durable too
		df.Close()
	}
	return uint64(size), nil
}

// writeOwn is vmledger's own writer: pages read from the RAM file and
// compressed in parallel (coredump.Write).
func writeOwn(ctx context.Context, cfg domains.Config, mem memoryAccess, out *os.File, o domains.DumpOptions, progress func(done, total uint64)) error {
	ram, err := os.Open(mem.RAMFile())
	if err != nil {
		return err
	}
	defer ram.Close()
	m, err := coredump.X86Map(cfg.Machine, cfg.MemoryMiB<<20)
	if err != nil {
		return err
	}
	var src io.ReaderAt = ram
	if dm, ok := mem.(dimmAccess); ok {
		dimms, err := dm.DIMMs(ctx)
		if err != nil {
			return err
		}
		if len(dimms) > 0 {
			all, err := coredump.AddFiles(ram, cfg.MemoryMiB<<20, m, dimms)
			if err != nil {
				return err
			}
			defer all.Close()
			src, m = all, all.Map
		}
	}
	cpus, err := mem.CPUStates(ctx)
	if err != nil {
		return err
	}
	// Linux's VMCOREINFO, when the guest published one; its absence is
	// no failure (the tiny guest has none).
	info, _ := coredump.FindVMCoreInfo(ctx, src, m)
	_, err = coredump.Write(ctx, out, src, m, coredump.Options{
		Format: coredump.Format(o.Format), Flattened: o.Flattened, CPUs: cpus, VMCoreInfo: info,
		Progress: func(done, total uint64) { progress(done*coredump.PageSize, total*coredump.PageSize) },
	})
	return err
}

// stopCrashed ends the guest's QEMU and records stopped (crashed), as
// destroy does, from inside a job.
func (j *Job) stopCrashed(ctx context.Context, detail string) error {
	id := j.domain.Config.UUID
	h := j.s.guest(id)
	if h == nil {
		return errors.New("dump: the guest is gone")
	}
	err := j.act(ctx, func() error {
		if err := h.guest.Kill(ctx); err != nil {
			return err
		}
		select {
		case <-h.guest.Done():
			return nil
		case <-ctx.Done():
			return fmt.Errorf("QEMU did not exit: %w", ctx.Err())
		}
	}, domains.Stopped{Reason: domains.StopCrashed, Detail: detail})
	if err == nil {
		j.s.forget(id, h)
	}
	return err
}
