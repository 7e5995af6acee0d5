// Package live runs the phases of a live migration (begin, prepare, perform,
// finish, confirm) on both sides' state machines (domains.Migration,
// docs/migration.md), recording every transition on its side's log before
// acting on it, and recovering on failure as the table says: the source
// resumes, the destination is torn down. It drives both QEMUs through
// interfaces, so the transport between two agents (NATS) and the
// in-process case are the caller's.
package live

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qemu"
)

// Source is the source's running guest (a *qemu.Guest).
type Source interface {
	MigrateLive(ctx context.Context, uri string, o qemu.LiveOptions) (qemu.LiveResult, error)
	Resume(ctx context.Context) error
	Kill(ctx context.Context) error
}

// Destination is the destination's QEMU started with -incoming (a
// *qemu.Guest from Driver.StartIncoming).
type Destination interface {
	ListenIncoming(ctx context.Context, host string) (string, error)
	WaitIncoming(ctx context.Context) error
	Resume(ctx context.Context) error
	Kill(ctx context.Context) error
}

// Recorder appends one side's migration-state event to that side's log.
// An error stops the migration: a transition not in the log must not be
// acted on.
type Recorder func(ctx context.Context, ev domains.MigrationState) error

// Plan is one migration.
type Plan struct {
	SourceHost, DestHost string
	Epoch                uint64 // the domain's ownership epoch at the source
	Source               Source
	// Prepare starts the destination's QEMU (on a fresh all-zero RAM
	// file, with the config the source sent).
	Prepare func(ctx context.Context) (Destination, error)
	Address string // where the destination listens (an IP; loopback in tests)
	Options qemu.LiveOptions
	// RecordSource and RecordDest log each side's transitions.
	RecordSource, RecordDest Recorder
}

// Outcome says where the guest ended up.
type Outcome struct {
	Source, Dest domains.Migration // final machines
	Result       qemu.LiveResult   // QEMU's figures when the stream completed
}

// Runs reports which host runs the guest at the end ("" for neither:
// a recovery failed, see docs/migration.md).
func (o Outcome) Runs() string {
	switch {
	case o.Dest.MayRun():
		return o.Source.Peer
	case o.Source.MayRun():
		return o.Dest.Peer
	}
	return ""
}

// recoverTimeout bounds the undo steps (resume, kill) once ctx is done.
const recoverTimeout = 10 * time.Second

// Run runs plan. On success the guest runs on the destination and the
// source's QEMU is gone; on failure the error says why, and the outcome
// says where the guest runs (the source, unless the recovery failed).
func Run(ctx context.Context, plan Plan) (Outcome, error) {
	src, err := domains.NewMigration(domains.RoleSource, plan.DestHost, plan.Epoch)
	if err != nil {
		return Outcome{}, err
	}
	dst, err := domains.NewMigration(domains.RoleDestination, plan.SourceHost, plan.Epoch)
	if err != nil {
		return Outcome{}, err
	}
	r := &liveRun{plan: plan, src: src, dst: dst}
	err = r.run(ctx)
	return Outcome{Source: r.src, Dest: r.dst, Result: r.result}, err
}

type liveRun struct {
	plan     Plan
	src, dst domains.Migration
	guest    Destination
	uri      string
	result   qemu.LiveResult
}

// move steps one side and records it.
func (r *liveRun) move(ctx context.Context, side *domains.Migration, to domains.MigrationPhase, cause error) error {
	next, ev, err := side.Step(to, cause)
	if err != nil {
		return err
	}
	return r.commit(ctx, side, next, ev)
}

func (r *liveRun) commit(ctx context.Context, side *domains.Migration, next domains.Migration, ev domains.MigrationState) error {
	rec := r.plan.RecordSource
	if side.Role == domains.RoleDestination {
		rec = r.plan.RecordDest
	}
	if err := rec(ctx, ev); err != nil {
		return fmt.Errorf("migration %s: record %s → %s: %w", side.Role, ev.From, ev.To, err)
	}
	*side = next
	return nil
}

func (r *liveRun) run(ctx context.Context) error {
	if err := r.move(ctx, &r.src, domains.MigBegun, nil); err != nil {
		return err
	}
	if err := r.prepare(ctx); err != nil {
		return r.abortBefore(ctx, err)
	}
	if err := r.move(ctx, &r.src, domains.MigPerforming, nil); err != nil {
		return r.abortBefore(ctx, err)
	}
	incoming := make(chan error, 1)
	go func() { incoming <- r.guest.WaitIncoming(ctx) }()
	res, err := r.plan.Source.MigrateLive(ctx, r.uri, r.plan.Options)
	if err != nil {
		return r.abortBefore(ctx, fmt.Errorf("perform: %w", err))
	}
	r.result = res
	// QEMU completed: the guest is paused here and whole there. Hand off.
	if err := r.move(ctx, &r.src, domains.MigHandedOff, nil); err != nil {
		// Not handed off: the source still owns the guest; resume it.
		return r.abortBefore(ctx, err)
	}
	next, ev, err := r.dst.Receive(r.plan.SourceHost, r.src.Epoch)
	if err == nil {
		err = r.commit(ctx, &r.dst, next, ev)
	}
	if err != nil {
		return r.abortAfter(ctx, fmt.Errorf("finish: %w", err))
	}
	if err := <-incoming; err != nil {
		return r.abortAfter(ctx, fmt.Errorf("finish: %w", err))
	}
	if err := r.guest.Resume(ctx); err != nil {
		return r.abortAfter(ctx, fmt.Errorf("finish: resume: %w", err))
	}
	if err := r.move(ctx, &r.dst, domains.MigFinished, nil); err != nil {
		// The guest runs there and the grant is logged there: the
		// destination owns it whatever this record says; report only.
		return fmt.Errorf("finish: %w", err)
	}
	if err := r.move(ctx, &r.src, domains.MigConfirmed, nil); err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if err := r.plan.Source.Kill(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("confirm: stop the source's QEMU: %w", err)
	}
	return nil
}

func (r *liveRun) prepare(ctx context.Context) error {
	if err := r.move(ctx, &r.dst, domains.MigPreparing, nil); err != nil {
		return err
	}
	g, err := r.plan.Prepare(ctx)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	r.guest = g
	uri, err := g.ListenIncoming(ctx, r.plan.Address)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	r.uri = uri
	return r.move(ctx, &r.dst, domains.MigPrepared, nil)
}

// abortBefore recovers before the hand-off: the destination is torn down
// and the source, which never gave the guest away, resumes it if QEMU
// paused it and goes to cancelled.
func (r *liveRun) abortBefore(ctx context.Context, cause error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
	defer cancel()
	errs := []error{cause, r.tearDown(rctx, cause)}
	// MigrateLive leaves the guest running on failure; a failure after it
	// completed (the hand-off not recorded) leaves it paused: resume.
	if r.result.Status == "completed" {
		if err := r.plan.Source.Resume(rctx); err != nil {
			errs = append(errs, r.move(rctx, &r.src, domains.MigError, fmt.Errorf("%w; resume: %w", cause, err)))
			return errors.Join(errs...)
		}
	}
	errs = append(errs, r.move(rctx, &r.src, domains.MigCancelled, cause))
	return errors.Join(errs...)
}

// abortAfter recovers after the hand-off: only the destination's release
// gives the source its guest back.
func (r *liveRun) abortAfter(ctx context.Context, cause error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
	defer cancel()
	if err := r.tearDown(rctx, cause); err != nil {
		// Not torn down (its QEMU may still run): no release, the source
		// stays paused in handed-off. Never both.
		return errors.Join(cause, err)
	}
	rel := r.dst.Release(r.plan.DestHost, cause.Error())
	if rel == nil {
		return errors.Join(cause, fmt.Errorf("destination in %s made no release", r.dst.Phase))
	}
	if err := r.plan.Source.Resume(rctx); err != nil {
		return errors.Join(cause, r.move(rctx, &r.src, domains.MigError, fmt.Errorf("%w; resume: %w", rel, err)))
	}
	return errors.Join(cause, r.move(rctx, &r.src, domains.MigCancelled, rel))
}

// tearDown kills the destination's QEMU (if any) and records torn-down.
func (r *liveRun) tearDown(ctx context.Context, cause error) error {
	if r.dst.Phase == domains.MigIdle || r.dst.Phase.Terminal() {
		return nil
	}
	if r.guest != nil {
		if err := r.guest.Kill(ctx); err != nil {
			return errors.Join(fmt.Errorf("tear down: %w", err),
				r.move(ctx, &r.dst, domains.MigError, fmt.Errorf("%w; kill: %w", cause, err)))
		}
	}
	return r.move(ctx, &r.dst, domains.MigTornDown, cause)
}
