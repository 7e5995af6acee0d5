package owner

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/migrate"
)

// Save, restore and managed save (virsh save, restore, managedsave): the
// asynchronous jobs that carry QEMU's migration stream through the agent
// into a save image (package migrate) and back. docs/migrate.md, "The
// agent's verbs".

// PathGuard confines the files save and restore open to the directories
// the agent allows (hypervisor/confine implements it). Resolve returns the
// real path; create: the file is to be made and must not exist.
type PathGuard interface {
	Resolve(path string, create bool) (string, error)
}

// streamOut is a save's capability of the guest (hypervisor/qemu's Guest):
// its migration stream, with the bandwidth cap lifted.
type streamOut interface {
	StreamOut(ctx context.Context, w io.Writer) (int64, error)
}

// streamIn is a restore's capability of a guest started for incoming.
type streamIn interface {
	StreamIn(ctx context.Context, r io.Reader) (int64, error)
}

// incomingDriver is a restore's capability of the driver: QEMU started
// with -incoming defer on a fresh, all-zero RAM file.
type incomingDriver interface {
	StartIncomingGuest(ctx context.Context, spec domains.StartSpec) (domains.Guest, error)
}

func invalid(format string, a ...any) error { return domains.Errorf(domains.CodeInvalid, format, a...) }

// Save streams a running or paused domain into a new image at o.Path and
// stops it (stopped, saved). It returns once the job is started.
func (s *Service) Save(ctx context.Context, cmdID, ref string, o domains.SaveOptions) (domains.Result, error) {
	if o.Running && o.Paused {
		return domains.Result{}, invalid("save: --running and --paused exclude each other")
	}
	if o.Compression == "" {
		o.Compression = migrate.Zstd.String()
	}
	comp, err := migrate.ParseCompression(o.Compression)
	if err != nil {
		return domains.Result{}, invalid("save: %w", err)
	}
	d, err := s.Get(ref)
	if err != nil {
		return domains.Result{}, err
	}
	if o.Managed {
		o.Path = ""
	}
	if res, ok, err := s.replayAsync(ctx, cmdID, ref, domains.JobSave, o); ok {
		return res, err
	}
	path := o.Path
	if o.Managed {
		if s.managedDir == "" {
			return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "this agent has no place for managed save images")
		}
		path = s.managedPath(d.Config.UUID)
	} else if path, err = s.resolve(o.Path, true); err != nil {
		return domains.Result{}, err
	}
	if _, ok := domains.Next(d.State, domains.TypeSaveStarted); !ok {
		return domains.Result{}, domains.Errorf(domains.CodeConflict, "cannot save domain %q: it is %s", d.Config.Name, d.State)
	}
	if o.Managed {
		if _, err := os.Lstat(path); err == nil {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q has a managed save image already", d.Config.Name)
		}
	}
	return s.RunAsync(ctx, cmdID, ref, domains.JobSave, o, func(ctx context.Context, j *Job) error {
		return s.runSave(ctx, j, path, comp, o)
	})
}

// replayAsync answers a retry: a command ID already on record gets its
// recorded result (or the reused-ID conflict) from RunAsync's check of
// the request, before the checks that the first run made untrue (the
// image exists now, the domain runs). handled is false for a new ID.
func (s *Service) replayAsync(ctx context.Context, cmdID, ref string, kind domains.JobKind, args any) (res domains.Result, handled bool, err error) {
	if cmdID == "" {
		return domains.Result{}, false, nil
	}
	if _, found, err := s.log.Command(ctx, cmdID); err != nil || !found {
		return domains.Result{}, false, nil
	}
	res, err = s.RunAsync(ctx, cmdID, ref, kind, args, func(context.Context, *Job) error {
		return errors.New("a retry does not run the job again")
	})
	return res, true, err
}

// imageDomain is the UUID of the domain in the image at path, read from
// its config without verifying the stream (for a retry's lookup only).
func imageDomain(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	rd, err := migrate.NewReader(f)
	if err != nil {
		return "", false
	}
	defer rd.Close()
	cfg, err := domains.DecodeConfig(rd.Config())
	if err != nil {
		return "", false
	}
	return cfg.UUID.String(), true
}

func (s *Service) resolve(path string, create bool) (string, error) {
	if path == "" {
		return "", invalid("missing \"path\"")
	}
	if s.images == nil {
		return "", domains.Errorf(domains.CodeUnavailable, "this agent allows no image directory")
	}
	real, err := s.images.Resolve(path, create)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", domains.Errorf(domains.CodeConflict, "%w", err)
		}
		return "", invalid("%w", err)
	}
	return real, nil
}

// undoCtx outlives an aborted job's context, for the undo and the record.
func undoCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// act does what brings a fact about and records it under the fold lock, so
// the QMP hint it causes (STOP, RESUME) finds the fact already on record.
func (j *Job) act(ctx context.Context, do func() error, ps ...domains.Payload) error {
	select {
	case j.sl.fold <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-j.sl.fold }()
	if err := do(); err != nil {
		return err
	}
	_, err := j.s.appendFold(ctx, time.Time{}, "", j.j.info.CommandID, j.domain.Config.UUID, ps...)
	return err
}

// progressWriter reports the bytes that pass through it.
type progressWriter struct {
	w     io.Writer
	n     atomic.Uint64
	total uint64
	j     *Job
	phase string
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	done := p.n.Add(uint64(n))
	p.j.Progress(domains.JobProgress{Phase: p.phase, Done: done, Total: p.total})
	return n, err
}

// ReadStreamFrom lets QEMU's stream be read straight into the image
// writer's buffers (migrate.Writer.ReadStreamFrom), counted on the way.
func (p *progressWriter) ReadStreamFrom(r io.Reader) (int64, error) {
	sr, ok := p.w.(interface {
		ReadStreamFrom(io.Reader) (int64, error)
	})
	if !ok {
		return io.Copy(struct{ io.Writer }{p}, r)
	}
	return sr.ReadStreamFrom(streamCounter{r: r, p: p})
}

type streamCounter struct {
	r io.Reader
	p *progressWriter
}

func (pr streamCounter) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	done := pr.p.n.Add(uint64(n))
	pr.p.j.Progress(domains.JobProgress{Phase: pr.p.phase, Done: done, Total: pr.p.total})
	return n, err
}

func (s *Service) runSave(ctx context.Context, j *Job, path string, comp migrate.Compression, o domains.SaveOptions) (err error) {
	d := j.Domain()
	g := j.Guest()
	if g == nil {
		return fmt.Errorf("domain %q: no connection to its QEMU", d.Config.Name)
	}
	so, ok1 := g.(streamOut)
	lc, ok2 := g.(lifecycle)
	if !ok1 || !ok2 {
		return fmt.Errorf("domain %q: its QEMU cannot stream its state out", d.Config.Name)
	}
	// The image carries what QEMU runs: the live config (hot-plugged
	// devices in, unplugged ones out), with the clock as the log has it
	// now (rtc-changed moves the persistent config's adjustment).
	live := d.LiveConfig()
	live.Clock = d.Config.Clock
	cfg, err := json.Marshal(live)
	if err != nil {
		return fmt.Errorf("save: config: %w", err)
	}
	wasRunning := d.State == domains.StateRunning
	if err := j.Record(ctx, domains.TransferStarted{Kind: domains.TypeSaveStarted, Path: path, Format: comp.String()}); err != nil {
		return err
	}
	paused := false
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		uctx, cancel := undoCtx(ctx)
		defer cancel()
		// Undo: the guest goes on as it was, unless QEMU is gone (then its
		// watcher records the end).
		select {
		case <-g.Done():
		default:
			if paused {
				if rerr := j.act(uctx, func() error { return lc.Resume(uctx) }, domains.Resumed{Reason: domains.PauseSave}); rerr != nil {
					err = fmt.Errorf("%w; resuming the guest failed: %w", err, rerr)
				}
			}
		}
		_ = j.Record(uctx, domains.TransferFailed{Kind: domains.TypeSaveFailed, Path: path, Error: err.Error()})
	}()
	if wasRunning {
		// Paused first, as libvirt does: the stream then needs one pass.
		if err := j.act(ctx, func() error { return lc.Pause(ctx) }, domains.Paused{Reason: domains.PauseSave}); err != nil {
			return fmt.Errorf("save: pause: %w", err)
		}
		paused = true
	}
	fw, err := migrate.Create(path, cfg, migrate.Options{Compression: comp, WasRunning: o.Running || wasRunning && !o.Paused})
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	pw := &progressWriter{w: fw, j: j, phase: "memory", total: uint64(d.Config.MemoryMiB) << 20}
	if _, err := so.StreamOut(ctx, pw); err != nil {
		fw.Abort()
		return fmt.Errorf("save: %w", err)
	}
	if err := ctx.Err(); err != nil {
		fw.Abort()
		return fmt.Errorf("save: %w", err)
	}
	st, err := fw.Commit()
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	// The image is durable: QEMU ends, and its end is this job's to
	// record (stopped, saved), not the watcher's (crashed).
	uctx, cancel := undoCtx(ctx)
	defer cancel()
	return j.endGuest(uctx, "save", domains.TransferCompleted{Kind: domains.TypeSaveCompleted, Path: path, Bytes: uint64(st.ImageBytes)},
		domains.Stopped{Reason: domains.StopSaved})
}

// endGuest kills the job's QEMU and records its end (ps): the end is
// this job's to record (stopped, saved or migrated), not the watcher's
// (crashed), so the watcher lets go of it first.
func (j *Job) endGuest(ctx context.Context, what string, ps ...domains.Payload) error {
	id, g := j.domain.Config.UUID, j.guest
	h := j.s.guest(id)
	return j.act(ctx, func() error {
		if h != nil {
			j.s.forget(id, h)
		}
		if err := g.Kill(ctx); err != nil {
			return fmt.Errorf("%s: end QEMU: %w", what, err)
		}
		select {
		case <-g.Done():
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: QEMU did not exit: %w", what, ctx.Err())
		}
	}, ps...)
}

// Restore verifies the whole image at o.Path, defines the domain from its
// config (or updates it: it must be shut off), then starts QEMU with
// -incoming defer on a fresh RAM file and feeds it the stream, as an
// asynchronous job; started (restored) is recorded once QEMU took it.
// Nothing changes for an image that fails its checks or a config that
// fails define's.
func (s *Service) Restore(ctx context.Context, cmdID string, o domains.RestoreOptions) (domains.Result, error) {
	if o.Running && o.Paused {
		return domains.Result{}, invalid("restore: --running and --paused exclude each other")
	}
	path, err := s.resolve(o.Path, false)
	if err != nil {
		return domains.Result{}, err
	}
	if id, ok := imageDomain(path); ok {
		if res, ok, err := s.replayAsync(ctx, cmdID, id, domains.JobRestore, o); ok {
			return res, err
		}
	}
	return s.restore(ctx, cmdID, path, o)
}

func (s *Service) restore(ctx context.Context, cmdID, path string, o domains.RestoreOptions) (domains.Result, error) {
	if s.driver == nil {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "this agent has no hypervisor")
	}
	if _, ok := s.driver.(incomingDriver); !ok {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "this agent's hypervisor cannot restore")
	}
	sum, err := migrate.VerifyFile(ctx, path)
	if err != nil {
		return domains.Result{}, invalid("restore: %w", err)
	}
	cfg, err := domains.DecodeConfig(sum.Config)
	if err != nil {
		return domains.Result{}, invalid("restore %s: the image's config: %w", path, err)
	}
	cfg = cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return domains.Result{}, invalid("restore %s: the image's config: %w", path, err)
	}
	if cur, err := s.Get(cfg.UUID.String()); err == nil {
		if cur.State.Active() {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "cannot restore domain %q: it is %s", cur.Config.Name, cur.State)
		}
		if err := ownedHere(cur); err != nil {
			return domains.Result{}, err
		}
	}
	// The domain as the image recorded it: defined, or updated (virsh
	// restore does the same). The define's own command ID derives from
	// the restore's, so a retry defines once.
	defID := ""
	if cmdID != "" {
		defID = cmdID + "/define"
	}
	if _, err := s.Define(ctx, defID, cfg); err != nil {
		var de *domains.Error
		if !errors.As(err, &de) || de.Code != domains.CodeConflict || !s.definedAs(cfg) {
			return domains.Result{}, err
		}
	}
	run := sum.Header.WasRunning
	if o.Running || o.Paused {
		run = o.Running
	}
	return s.RunAsync(ctx, cmdID, cfg.UUID.String(), domains.JobRestore, o, func(ctx context.Context, j *Job) error {
		return s.runRestore(ctx, j, path, sum, run, o.Managed)
	})
}

// definedAs reports whether the domain is defined with exactly cfg (a
// define of it was refused as a no-op).
func (s *Service) definedAs(cfg domains.Config) bool {
	d, err := s.Get(cfg.UUID.String())
	return err == nil && equalConfig(d.Config, cfg)
}

func (s *Service) runRestore(ctx context.Context, j *Job, path string, sum migrate.Summary, run, managed bool) (err error) {
	d := j.Domain()
	if d.State.Active() {
		return fmt.Errorf("domain %q is %s", d.Config.Name, d.State)
	}
	if err := j.Record(ctx, domains.TransferStarted{Kind: domains.TypeRestoreStarted, Path: path, Format: sum.Header.Compression.String()}); err != nil {
		return err
	}
	var g domains.Guest
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		uctx, cancel := undoCtx(ctx)
		defer cancel()
		if g != nil { // no QEMU is left from a failed restore
			if kerr := g.Kill(uctx); kerr == nil {
				select {
				case <-g.Done():
				case <-uctx.Done():
				}
			}
		}
		_ = j.Record(uctx, domains.TransferFailed{Kind: domains.TypeRestoreFailed, Path: path, Error: err.Error()})
	}()
	cfg, err := s.confined(d.Config)
	if err != nil {
		return err
	}
	base := domains.ClockBase(d.Config.Clock, s.clock.Now())
	drv := s.driver.(incomingDriver)
	pr := &progressReader{j: j, total: uint64(sum.StreamBytes), phase: "memory"}
	err = migrate.Feed(ctx, path, sum, func(ctx context.Context) (migrate.Target, error) {
		var err error
		g, err = drv.StartIncomingGuest(ctx, domains.StartSpec{Config: cfg, ClockBase: base, Paused: true})
		if err != nil {
			return nil, err
		}
		in, ok := g.(streamIn)
		if !ok {
			return nil, fmt.Errorf("its QEMU cannot take a stream in")
		}
		pr.in = in
		return pr, nil
	})
	if err != nil {
		return err
	}
	lc, ok := g.(lifecycle)
	if !ok {
		return fmt.Errorf("restore: its QEMU cannot resume")
	}
	ps := []domains.Payload{domains.Started{Reason: domains.StartRestored, Accel: g.Accel(), PID: g.PID(), ClockBase: base},
		domains.TransferCompleted{Kind: domains.TypeRestoreCompleted, Path: path, Bytes: imageSize(path),
			Digest: "xxh64:" + hex.EncodeToString(be64(sum.StreamXXH64))}}
	if !run {
		ps = append(ps, domains.Paused{Reason: domains.PauseUser})
	}
	uctx, cancel := undoCtx(ctx)
	defer cancel()
	err = j.act(uctx, func() error {
		if run {
			return lc.Resume(uctx)
		}
		return nil
	}, ps...)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.watch(d.Config.UUID, g)
	if managed {
		// Restored: the managed image is spent (libvirt removes it too).
		_ = os.Remove(path)
	}
	return nil
}

// imageSize is the image file's size, as save-completed reports it.
func imageSize(path string) uint64 {
	if fi, err := os.Stat(path); err == nil {
		return uint64(fi.Size())
	}
	return 0
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// progressReader is the restore's target: it reports the stream bytes
// QEMU has taken.
type progressReader struct {
	in    streamIn
	j     *Job
	total uint64
	phase string
	n     uint64
}

func (p *progressReader) StreamIn(ctx context.Context, r io.Reader) (int64, error) {
	return p.in.StreamIn(ctx, readFunc(func(b []byte) (int, error) {
		n, err := r.Read(b)
		p.n += uint64(n)
		p.j.Progress(domains.JobProgress{Phase: p.phase, Done: p.n, Total: p.total})
		return n, err
	}))
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(b []byte) (int, error) { return f(b) }

// managedPath is where a domain's managed save image lives.
func (s *Service) managedPath(id uuid.UUID) string {
	return filepath.Join(s.managedDir, id.String()+".save")
}

// HasManagedSave reports whether the domain has a managed save image.
func (s *Service) HasManagedSave(id uuid.UUID) bool {
	if s.managedDir == "" {
		return false
	}
	_, err := os.Lstat(s.managedPath(id))
	return err == nil
}

// ManagedSave saves the domain into the agent's own place; the next start
// restores it (virsh managedsave).
func (s *Service) ManagedSave(ctx context.Context, cmdID, ref string, o domains.SaveOptions) (domains.Result, error) {
	o.Managed, o.Path = true, ""
	return s.Save(ctx, cmdID, ref, o)
}

// ManagedSaveRemove discards the domain's managed save image (virsh
// managedsave-remove) and records managed-save-removed.
func (s *Service) ManagedSaveRemove(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest(string(domains.JobManagedSaveRemove), ref, nil), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobManagedSaveRemove, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if !s.HasManagedSave(d.Config.UUID) {
			return domains.Result{}, domains.Errorf(domains.CodeNotFound, "domain %q has no managed save image", d.Config.Name)
		}
		if d.State.Active() {
			// Only a shut-off domain has one (a start restores it).
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is %s", d.Config.Name, d.State)
		}
		return s.discardManaged(ctx, cmdID, d, domains.ManagedSaveRemovedByUser)
	})
}

// discardManaged removes the managed save image and records it. The image
// is first renamed aside, so that a failed append puts it back and the
// log and the file never disagree: recorded means gone.
func (s *Service) discardManaged(ctx context.Context, cmdID string, d domains.Domain, reason string) (domains.Result, error) {
	path := s.managedPath(d.Config.UUID)
	aside := path + ".removing"
	if err := os.Rename(path, aside); err != nil {
		return domains.Result{}, domains.Errorf(domains.CodeInternal, "discard the managed save image of %q: %w", d.Config.Name, err)
	}
	res, err := s.commit(ctx, cmdID, d.Config.UUID, domains.ManagedSaveRemoved{Path: path, Reason: reason})
	if err != nil {
		if rerr := os.Rename(aside, path); rerr != nil {
			err = errors.Join(err, fmt.Errorf("the image stays at %s: %w", aside, rerr))
		}
		return domains.Result{}, err
	}
	_ = os.Remove(aside) // recorded: a file left over only wastes space
	return res, nil
}

// startManaged is start's first step: a shut-off domain with a managed
// save image is restored from it (an asynchronous job: the result names
// it), unless o.ForceBoot, which discards the image and boots. handled is
// false when start should boot.
func (s *Service) startManaged(ctx context.Context, cmdID, ref string, o domains.StartOptions) (res domains.Result, handled bool, err error) {
	d, err := s.Get(ref)
	if err != nil || d.State.Active() {
		return domains.Result{}, false, nil // start answers these
	}
	path := s.managedPath(d.Config.UUID)
	ro := domains.RestoreOptions{Path: path, Managed: true, Paused: o.Paused}
	if cmdID != "" {
		// A retry of a start that restored (the image is gone by now)
		// gets that restore's result.
		if rec, found, _ := s.log.Command(ctx, cmdID); found && string(rec.Digest) == string(requestDigest(string(domains.JobRestore), d.Config.UUID.String(), ro)) {
			res, _, err := s.replayAsync(ctx, cmdID, d.Config.UUID.String(), domains.JobRestore, ro)
			return res, true, err
		}
	}
	if !s.HasManagedSave(d.Config.UUID) {
		return domains.Result{}, false, nil
	}
	if o.ForceBoot {
		if _, err := s.discardManaged(ctx, "", d, domains.ManagedSaveDiscarded); err != nil {
			return domains.Result{}, true, err
		}
		return domains.Result{}, false, nil
	}
	res, err = s.restore(ctx, cmdID, path, ro)
	return res, true, err
}
