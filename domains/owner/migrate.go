package owner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// Live migration between two agents, the source's side (virsh migrate
// --live): an asynchronous job that runs the phases of docs/migration.md
// (begin, prepare, perform, finish, confirm) on its machine, asking the
// destination agent for prepare and finish over the bus (MigrationPeer).
// Every transition is appended to the log before it is acted on; the
// destination's side is migrate_in.go.

// MigrationPeer reaches another agent's migration verbs (the agent wires
// it to the bus: vmledger.peer.<host>.migrate-prepare, ...).
type MigrationPeer interface {
	Prepare(ctx context.Context, host string, req domains.MigrationPrepare) (domains.MigrationPrepared, error)
	Finish(ctx context.Context, host string, req domains.MigrationFinish) (domains.MigrationFinished, error)
	Cancel(ctx context.Context, host string, req domains.MigrationCancel) error
	// Lookup asks host's agent for the domain (found false: not defined
	// there); an error means the agent does not answer.
	Lookup(ctx context.Context, host, id string) (d domains.Domain, found bool, err error)
}

// lookupTimeout bounds migrate's check that the destination answers.
const lookupTimeout = 10 * time.Second

// How long the source waits for the destination's answer to prepare (a
// QEMU start on a loaded host) and to finish (the stream's end was seen
// already: the resume and two appends).
const (
	prepareTimeout = 2 * time.Minute
	finishTimeout  = 2 * time.Minute
)

// defaultListen is where the destination's QEMU listens when the user
// named no address.
const defaultListen = "127.0.0.1"

func checkListen(addr string) error {
	if addr != "" && net.ParseIP(addr) == nil {
		return invalid("listen address %s: must be an IP address", domains.Quote(addr))
	}
	return nil
}

// Migrate moves a running or paused domain to the agent of host o.To, as
// an asynchronous job; it returns once the job has started.
func (s *Service) Migrate(ctx context.Context, cmdID, ref string, o domains.MigrateOptions) (domains.Result, error) {
	switch {
	case !domains.ValidName(o.To):
		return domains.Result{}, invalid("migrate: destination host %s: must be a host name (letters, digits, '-', '_')", domains.Quote(o.To))
	case o.To == s.host:
		return domains.Result{}, invalid("migrate: %s is this host", domains.Quote(o.To))
	case o.Bandwidth < 0 || o.MaxDowntime < 0:
		return domains.Result{}, invalid("migrate: bandwidth and max downtime must not be negative")
	}
	if err := checkListen(o.Listen); err != nil {
		return domains.Result{}, err
	}
	d, err := s.Get(ref)
	if err != nil {
		return domains.Result{}, err
	}
	if res, ok, err := s.replayAsync(ctx, cmdID, ref, domains.JobMigrate, o); ok {
		return res, err
	}
	if s.peers == nil {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "this agent cannot reach other agents")
	}
	if d.State != domains.StateRunning && d.State != domains.StatePaused {
		return domains.Result{}, domains.Errorf(domains.CodeConflict, "cannot migrate domain %q: it is %s", d.Config.Name, d.State)
	}
	if err := ownedHere(d); err != nil {
		return domains.Result{}, err
	}
	// Checked before anything is recorded: a destination that does not
	// answer, or runs the domain already, is refused with nothing logged.
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	there, found, err := s.peers.Lookup(lctx, o.To, d.Config.UUID.String())
	cancel()
	switch {
	case err != nil:
		return domains.Result{}, coded(domains.CodeUnavailable, "migrate %q: destination %s: %w", d.Config.Name, o.To, err)
	case found && there.State.Active():
		return domains.Result{}, domains.Errorf(domains.CodeConflict, "migrate %q: it is %s on %s already", d.Config.Name, there.State, o.To)
	}
	return s.RunAsync(ctx, cmdID, ref, domains.JobMigrate, o, func(ctx context.Context, j *Job) error {
		return s.runMigrate(ctx, j, o)
	})
}

// ownedHere refuses to run a domain whose ownership this host gave away
// (docs/migration.md, "Why both hosts can never own or run the guest").
func ownedHere(d domains.Domain) error {
	if d.OwnedHere() {
		return nil
	}
	m := d.Migration
	return domains.Errorf(domains.CodeConflict, "domain %q is not owned by this host: its migration to %s is %s (epoch %d)", d.Config.Name, m.Peer, m.Phase, m.Epoch)
}

// machine is one side's migration machine with its job: each transition
// is recorded before the caller acts on it.
type machine struct {
	m domains.Migration
	j *Job
}

// step records m's move to phase to (with extra facts in the same append)
// and only then takes it.
func (mc *machine) step(ctx context.Context, to domains.MigrationPhase, cause error, extra ...domains.Payload) error {
	next, ev, err := mc.m.Step(to, cause)
	if err != nil {
		return err
	}
	return mc.commit(ctx, next, ev, extra...)
}

func (mc *machine) commit(ctx context.Context, next domains.Migration, ev domains.MigrationState, extra ...domains.Payload) error {
	if err := mc.j.Record(ctx, append([]domains.Payload{ev}, extra...)...); err != nil {
		return fmt.Errorf("migration %s: record %s → %s: %w", mc.m.Role, ev.From, ev.To, err)
	}
	mc.m = next
	return nil
}

// actFacts is Job.act with facts that depend on the domain as folded
// under the lock (a hint may have recorded the pause already).
func (j *Job) actFacts(ctx context.Context, do func() error, facts func(d domains.Domain) []domains.Payload) error {
	select {
	case j.sl.fold <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-j.sl.fold }()
	if do != nil {
		if err := do(); err != nil {
			return err
		}
	}
	d, err := j.s.Get(j.domain.Config.UUID.String())
	if err != nil {
		return err
	}
	ps := facts(d)
	if len(ps) == 0 {
		return nil
	}
	_, err = j.s.appendFold(ctx, time.Time{}, "", j.j.info.CommandID, j.domain.Config.UUID, ps...)
	return err
}

func (s *Service) runMigrate(ctx context.Context, j *Job, o domains.MigrateOptions) error {
	d := j.Domain()
	g := j.Guest()
	if g == nil {
		return fmt.Errorf("domain %q: no connection to its QEMU", d.Config.Name)
	}
	src, ok1 := g.(LiveSource)
	lc, ok2 := g.(lifecycle)
	if !ok1 || !ok2 || d.Live == nil {
		return fmt.Errorf("domain %q: its QEMU cannot migrate live", d.Config.Name)
	}
	m, err := domains.NewMigration(domains.RoleSource, o.To, d.OwnershipEpoch())
	if err != nil {
		return err
	}
	mc := &machine{m: m, j: j}
	// The destination runs what QEMU runs here: the live config (devices
	// hot-plugged in, unplugged ones out), with the clock as the log has
	// it now (as a save image carries it).
	live := d.LiveConfig()
	live.Clock = d.Config.Clock
	cfg, err := json.Marshal(live)
	if err != nil {
		return fmt.Errorf("migrate: config: %w", err)
	}
	wasPaused := d.State == domains.StatePaused
	listen := o.Listen
	if listen == "" {
		listen = defaultListen
	}
	r := &outgoing{s: s, j: j, mc: mc, o: o, lc: lc, wasPaused: wasPaused}

	// begin
	if err := mc.step(ctx, domains.MigBegun, nil); err != nil {
		return err
	}
	// prepare (the destination's)
	pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	prep, err := s.peers.Prepare(pctx, o.To, domains.MigrationPrepare{ID: j.ID(), Source: s.host, Epoch: mc.m.Epoch,
		Config: cfg, RTC: d.Live.RTC, Listen: listen})
	cancel()
	if err != nil {
		return r.cancel(ctx, fmt.Errorf("prepare on %s: %w", o.To, err))
	}
	// perform
	if err := mc.step(ctx, domains.MigPerforming, nil); err != nil {
		return r.cancel(ctx, err)
	}
	stats, err := r.perform(ctx, src, prep.URI)
	if err != nil {
		return r.cancel(ctx, fmt.Errorf("perform: %w", err))
	}
	r.completed = true
	// QEMU completed: the guest is paused here and whole there. Hand off
	// (the grant, epoch+1, is this event) before telling the destination.
	next, ev, err := mc.m.Step(domains.MigHandedOff, nil)
	if err == nil {
		err = j.actFacts(ctx, nil, func(d domains.Domain) []domains.Payload {
			if d.State == domains.StateRunning { // unless its STOP hint said so already
				return []domains.Payload{ev, domains.Paused{Reason: domains.PauseMigration}}
			}
			return []domains.Payload{ev}
		})
	}
	if err != nil {
		// Not handed off: this host still owns the guest. Resume it.
		return r.cancel(ctx, fmt.Errorf("hand off: %w", err))
	}
	mc.m = next
	// finish (the destination's)
	// From the grant on, an abort changes nothing: only the destination
	// decides, and its answer must be heard (askFinish).
	fin, err := r.askFinish(ctx, domains.MigrationFinish{ID: j.ID(), Domain: d.Config.UUID.String(),
		Source: s.host, Epoch: mc.m.Epoch, Paused: wasPaused})
	switch {
	case err == nil && fin.Finished:
		return r.confirm(ctx, stats)
	case err == nil && fin.Release != nil:
		return r.released(ctx, fin.Release)
	case err == nil:
		err = errors.New("the destination answered neither finished nor a release")
	}
	return fmt.Errorf("finish on %s: %w; without its release the guest stays paused here (handed-off, epoch %d granted), "+
		"until the destination's log says where it runs (docs/migration.md)", o.To, err, mc.m.Epoch)
}

// outgoing is one migration on the source.
type outgoing struct {
	s         *Service
	j         *Job
	mc        *machine
	o         domains.MigrateOptions
	lc        lifecycle
	wasPaused bool
	completed bool // QEMU completed the stream: the guest is paused here
}

// perform streams QEMU to QEMU, reporting progress on the bus and each
// new RAM pass as a migration-iteration event.
func (r *outgoing) perform(ctx context.Context, src LiveSource, uri string) (domains.MigrationStats, error) {
	passes := make(chan domains.MigrationProgress, 16)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for p := range passes {
			_ = r.j.Record(context.WithoutCancel(ctx), domains.MigrationIteration{Pass: p.Pass, Remaining: p.Remaining, Sent: p.Sent})
		}
	}()
	var last uint64
	stats, err := src.MigrateLiveTo(ctx, uri, domains.LiveMigrateOptions{Bandwidth: r.o.Bandwidth, MaxDowntime: r.o.MaxDowntime,
		Progress: func(p domains.MigrationProgress) {
			r.j.Progress(domains.JobProgress{Phase: "memory", Done: p.Sent, Total: p.Sent + p.Remaining,
				Pass: p.Pass, Remaining: p.Remaining, DirtyRate: p.DirtyRate})
			if p.Pass > last && p.Status != "completed" {
				last = p.Pass
				select { // a dropped report costs an event, never the stream
				case passes <- p:
				default:
				}
			}
		}})
	close(passes)
	<-recorded // iterations come before the next transition in the log
	return stats, err
}

// cancel recovers before the hand-off: the destination tears down, the
// guest runs on here (resumed if QEMU paused it), and the source goes to
// cancelled with the cause.
func (r *outgoing) cancel(ctx context.Context, cause error) error {
	if ctx.Err() != nil {
		cause = fmt.Errorf("%w (%w)", context.Cause(ctx), cause)
	}
	uctx, done := undoCtx(ctx)
	defer done()
	errs := []error{cause}
	if r.mc.m.Phase != domains.MigIdle {
		if err := r.s.peers.Cancel(uctx, r.o.To, domains.MigrationCancel{ID: r.j.ID(), Domain: r.j.Domain().Config.UUID.String(),
			Reason: cause.Error()}); err != nil && !errors.Is(err, domains.ErrNotFound) {
			// Its QEMU ends with the cut stream anyway (docs/migration.md).
			errs = append(errs, fmt.Errorf("tell %s to tear down: %w", r.o.To, err))
		}
	}
	if r.completed && !r.wasPaused {
		err := r.j.actFacts(uctx, func() error { return r.lc.Resume(uctx) }, func(d domains.Domain) []domains.Payload {
			if d.State == domains.StatePaused {
				return []domains.Payload{domains.Resumed{Reason: domains.PauseMigration}}
			}
			return nil
		})
		if err != nil {
			return errors.Join(append(errs, r.mc.step(uctx, domains.MigError, fmt.Errorf("%w; resume: %w", cause, err)))...)
		}
	}
	return errors.Join(append(errs, r.mc.step(uctx, domains.MigCancelled, cause))...)
}

// released recovers after the hand-off, with the destination's release
// of exactly the granted epoch (Step checks it): resume here.
func (r *outgoing) released(ctx context.Context, rel *domains.MigrationRelease) error {
	uctx, done := undoCtx(ctx)
	defer done()
	next, ev, err := r.mc.m.Step(domains.MigCancelled, rel)
	if err != nil {
		return fmt.Errorf("finish on %s failed, and its release is refused: %w; the guest stays paused here", r.o.To, err)
	}
	cause := fmt.Errorf("finish on %s: %w", r.o.To, rel)
	err = r.j.actFacts(uctx, func() error {
		if r.wasPaused {
			return nil
		}
		return r.lc.Resume(uctx)
	}, func(d domains.Domain) []domains.Payload {
		ps := []domains.Payload{ev}
		if !r.wasPaused && d.State == domains.StatePaused {
			ps = append(ps, domains.Resumed{Reason: domains.PauseMigration})
		}
		return ps
	})
	if err != nil {
		// Ownership is back, the resume failed: the operator looks.
		return errors.Join(cause, r.mc.step(uctx, domains.MigError, fmt.Errorf("%w; resume: %w", rel, err)))
	}
	r.mc.m = next
	return cause
}

// confirm ends a migration that finished on the destination: the source's
// QEMU stops (stopped, migrated) and, unless kept, the definition goes
// with the job's end.
func (r *outgoing) confirm(ctx context.Context, st domains.MigrationStats) error {
	uctx, done := undoCtx(ctx)
	defer done()
	// The guest runs there now; nothing here may fail the job back.
	if err := r.mc.step(uctx, domains.MigConfirmed, nil); err != nil {
		return fmt.Errorf("confirm: %w (the guest runs on %s)", err, r.o.To)
	}
	err := r.j.endGuest(uctx, "confirm", domains.Stopped{Reason: domains.StopMigrated,
		Detail: fmt.Sprintf("migrated to %s: QEMU total %d ms, downtime %d ms", r.o.To, st.TotalTime.Milliseconds(), st.Downtime.Milliseconds())})
	if err != nil {
		return err
	}
	if !r.o.KeepSource {
		r.j.final = append(r.j.final, domains.Undefined{})
	}
	return nil
}
