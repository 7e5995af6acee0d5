package owner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// Start boots a shut-off domain.
func (s *Service) Start(ctx context.Context, cmdID, ref string, o domains.StartOptions) (domains.Result, error) {
	if res, ok, err := s.startManaged(ctx, cmdID, ref, o); ok {
		return res, err // restored from its managed save image (save.go)
	}
	return s.once(ctx, cmdID, requestDigest("start", ref, o), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobStart, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if _, ok := domains.Next(d.State, domains.TypeStarted); !ok {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is already %s", d.Config.Name, d.State)
		}
		if err := ownedHere(d); err != nil {
			return domains.Result{}, err
		}
		if s.driver == nil {
			return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "this agent has no hypervisor")
		}
		cfg, err := s.confined(d.Config)
		if err != nil {
			return domains.Result{}, err
		}
		base := domains.ClockBase(d.Config.Clock, s.clock.Now())
		g, err := s.driver.Start(ctx, domains.StartSpec{Config: cfg, ClockBase: base, Paused: o.Paused})
		if err != nil {
			return domains.Result{}, coded(domains.CodeUnavailable, "start domain %q: %w", d.Config.Name, err)
		}
		ps := []domains.Payload{domains.Started{Reason: domains.StartBooted, Accel: g.Accel(), PID: g.PID(), ClockBase: base}}
		if o.Paused {
			ps = append(ps, domains.Paused{Reason: domains.PauseUser})
		}
		res, err := s.commit(ctx, cmdID, d.Config.UUID, ps...)
		if err != nil && s.startLanded(d.Config.UUID, g.PID()) {
			// The append failed ambiguously but its events are in the log:
			// the start is on record, so the guest runs and is watched.
			s.watch(d.Config.UUID, g)
			return s.reread(ctx, cmdID)
		}
		if err != nil {
			// Undo: a guest whose start is not on record must not run.
			kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = g.Kill(kctx)
			return domains.Result{}, err
		}
		s.watch(d.Config.UUID, g)
		return res, nil
	})
}

// Shutdown asks the guest to power off (ACPI power button). The guest
// decides; its shutdown and stopped events follow when it does.
func (s *Service) Shutdown(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.act(ctx, cmdID, ref, domains.JobShutdown, domains.TypeShutdown, func(ctx context.Context, g lifecycle) (domains.Payload, error) {
		s.cancelReboot(ctx, g) // a shutdown now means power off (reboot.go)
		return nil, g.Powerdown(ctx)
	})
}

// Suspend pauses the vCPUs.
func (s *Service) Suspend(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.act(ctx, cmdID, ref, domains.JobSuspend, domains.TypePaused, func(ctx context.Context, g lifecycle) (domains.Payload, error) {
		return domains.Paused{Reason: domains.PauseUser}, g.Pause(ctx)
	})
}

// Resume restarts paused vCPUs.
func (s *Service) Resume(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.act(ctx, cmdID, ref, domains.JobResume, domains.TypeResumed, func(ctx context.Context, g lifecycle) (domains.Payload, error) {
		return domains.Resumed{Reason: domains.PauseUser}, g.Resume(ctx)
	})
}

// Reset is a hard reset of the guest, as the reset button.
func (s *Service) Reset(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.act(ctx, cmdID, ref, domains.JobReset, domains.TypeReset, func(ctx context.Context, g lifecycle) (domains.Payload, error) {
		return domains.Reset{Guest: false, Reason: "host"}, g.Reset(ctx)
	})
}

// Destroy kills QEMU at once.
func (s *Service) Destroy(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("destroy", ref, nil), func() (domains.Result, error) {
		// An asynchronous job ends first: destroy aborts it, then kills.
		if cur, err := s.Get(ref); err == nil {
			if err := s.abortForDestroy(ctx, cur.Config.UUID, cur.Config.Name); err != nil {
				return domains.Result{}, err
			}
		}
		d, unlock, err := s.acquire(ctx, ref, domains.JobDestroy, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if _, ok := domains.Next(d.State, domains.TypeStopped); !ok {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is not running (%s)", d.Config.Name, d.State)
		}
		h := s.guest(d.Config.UUID)
		if h == nil && s.driver != nil {
			// Not watched (recovery failed): find QEMU before declaring it
			// stopped, so destroy never leaves a guest running unrecorded.
			g, err := s.driver.Attach(ctx, d.Config)
			if errors.Is(err, domains.ErrNotFound) {
				g, err = s.settle(ctx, d.Config) // and a dead one's run files go
			}
			switch {
			case g != nil:
				h = &guestHandle{id: d.Config.UUID, guest: g}
			case !errors.Is(err, domains.ErrNotFound):
				return domains.Result{}, coded(domains.CodeUnavailable, "destroy %q: %w", d.Config.Name, err)
			}
		}
		attached := h != nil && s.guest(d.Config.UUID) != h
		if h != nil {
			err := h.guest.Kill(ctx)
			if err == nil {
				select {
				case <-h.guest.Done():
				case <-ctx.Done():
					err = fmt.Errorf("QEMU did not exit: %w", ctx.Err())
				}
			}
			if err != nil {
				if attached {
					_ = h.guest.Detach() // not ours to keep: drop the monitor
				}
				return domains.Result{}, coded(domains.CodeUnavailable, "destroy %q: %w", d.Config.Name, err)
			}
		}
		res, err := s.commit(ctx, cmdID, d.Config.UUID, domains.Stopped{Reason: domains.StopDestroyed})
		if err == nil && h != nil {
			// Only now: had the commit failed, the watcher would still
			// record QEMU's end as stopped (crashed).
			s.forget(d.Config.UUID, h)
		}
		return res, err
	})
}

// lifecycle is what the lifecycle verbs do to a running guest (the
// capability hypervisor/qemu's Guest has).
type lifecycle interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Reset(ctx context.Context) error
	// Powerdown presses the ACPI power button.
	Powerdown(ctx context.Context) error
}

// act runs a verb that needs a live guest and records what it did. The
// transition on event type t is checked before QEMU is touched.
func (s *Service) act(ctx context.Context, cmdID, ref string, kind domains.JobKind, t domains.Type, do func(context.Context, lifecycle) (domains.Payload, error)) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest(verbOf(t), ref, nil), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, kind, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		// In shutdown, the guest is on its way out: pausing it there would
		// strand it (there is no resume from "in shutdown"), and pressing
		// the button twice does nothing more. Only a fake reboot resumes
		// from it (reboot.go).
		if _, ok := domains.Next(d.State, t); !ok || d.State == domains.StateShutdown && (t == domains.TypeShutdown || t == domains.TypePaused || t == domains.TypeResumed) {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "cannot %s domain %q: it is %s", verbOf(t), d.Config.Name, d.State)
		}
		if t == domains.TypeResumed {
			if err := ownedHere(d); err != nil { // handed off: paused until released
				return domains.Result{}, err
			}
		}
		h := s.guest(d.Config.UUID)
		if h == nil {
			return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "domain %q: no connection to its QEMU", d.Config.Name)
		}
		lc, ok := h.guest.(lifecycle)
		if !ok {
			return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "domain %q: its QEMU cannot %s", d.Config.Name, verbOf(t))
		}
		p, err := do(ctx, lc)
		if err != nil {
			return domains.Result{}, coded(domains.CodeUnavailable, "%s %q: %w", verbOf(t), d.Config.Name, err)
		}
		if p == nil {
			// No event (the guest decides), but the command is recorded.
			res := domains.Result{Domain: d.Config.UUID, Name: d.Config.Name, Seqs: []uint64{}, State: d.State}
			if err := s.recordCommand(ctx, cmdID, res); err != nil {
				return domains.Result{}, err
			}
			return res, nil
		}
		return s.commit(ctx, cmdID, d.Config.UUID, p)
	})
}

func verbOf(t domains.Type) string {
	switch t {
	case domains.TypePaused:
		return "suspend"
	case domains.TypeResumed:
		return "resume"
	case domains.TypeShutdown:
		return "shut down"
	case domains.TypeReset:
		return "reset"
	}
	return string(t)
}

// coded keeps an error's code when it has one, else uses code.
func coded(code domains.Code, format string, a ...any) error {
	err := domains.Errorf(code, format, a...)
	var inner *domains.Error
	if e, ok := err.(*domains.Error); ok && e.Unwrap() != nil && errors.As(e.Unwrap(), &inner) {
		e.Code = inner.Code
	}
	return err
}

// reread returns the recorded result of a command whose append failed
// ambiguously but landed.
func (s *Service) reread(ctx context.Context, cmdID string) (domains.Result, error) {
	if cmdID == "" {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "the start was recorded, but its reply was lost; see the domain's history")
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	rec, found, err := s.log.Command(rctx, cmdID)
	if err != nil || !found {
		return domains.Result{}, domains.Errorf(domains.CodeUnavailable, "the start was recorded, but its reply was lost: %v", err)
	}
	return decodeResult(rec)
}
