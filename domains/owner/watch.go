package owner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// guestHandle ties a running Guest to its domain.
type guestHandle struct {
	id    uuid.UUID
	guest domains.Guest
	// reboot holds the command ID of a reboot the guest has not acted on
	// yet (reboot.go).
	reboot atomic.Pointer[string]
}

func (s *Service) guest(id uuid.UUID) *guestHandle {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.guests[id]
}

func (s *Service) forget(id uuid.UUID, h *guestHandle) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.guests[id] == h {
		delete(s.guests, id)
	}
}

// watch folds a guest's QMP hints and its exit into events. The guest's
// lifetime is its own: no request context reaches this goroutine.
func (s *Service) watch(id uuid.UUID, g domains.Guest) {
	h := &guestHandle{id: id, guest: g}
	s.lmu.Lock()
	select {
	case <-s.closed:
		// The service stopped while this guest was starting: leave it
		// running for the next agent, as Close does with the others.
		s.lmu.Unlock()
		_ = g.Detach()
		return
	default:
	}
	s.guests[id] = h
	s.wg.Add(1) // under lmu, ordered before Close's Wait
	s.lmu.Unlock()
	go func() {
		defer s.wg.Done()
		events := g.Events()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					// The monitor went away. If QEMU is exiting, Done
					// follows; if not, reconnect and re-read its state.
					select {
					case <-g.Done():
						s.exited(h)
					case <-time.After(monitorGrace):
						s.reconnect(h)
					case <-s.closed:
					}
					return
				}
				s.hint(h, ev)
			case <-g.Done():
				// Hints QEMU sent just before exiting (SHUTDOWN, a last
				// RTC_CHANGE) are facts too: fold them first.
				s.drain(h, events)
				s.exited(h)
				return
			case <-s.closed:
				return
			}
		}
	}()
}

func (s *Service) drain(h *guestHandle, events <-chan domains.GuestEvent) {
	if events == nil {
		return
	}
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			s.hint(h, ev)
		case <-t.C:
			return
		}
	}
}

// current returns the domain if h is still its live guest.
func (s *Service) current(h *guestHandle) (domains.Domain, bool) {
	if s.guest(h.id) != h {
		return domains.Domain{}, false
	}
	s.mu.RLock()
	d, ok := s.proj.Get(h.id)
	s.mu.RUnlock()
	return d, ok && d.State.Active() && d.Live != nil
}

// hint handles one QMP event. QMP events are hints: where state is
// concerned, QEMU's real state is re-read and only differences recorded.
func (s *Service) hint(h *guestHandle, ev domains.GuestEvent) {
	unlock := s.foldLock(h.id)
	if unlock == nil {
		return
	}
	defer unlock()
	d, ok := s.current(h)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.hintTO)
	defer cancel()
	var p domains.Payload
	switch ev.Kind {
	case domains.GuestRTCChange:
		p = domains.RTCChanged{Offset: ev.Offset, Adjustment: domains.RTCAdjustment(d.Live.ClockBase, ev.Offset)}
	case domains.GuestReset:
		if ev.Guest { // host resets are recorded by the reset command
			p = domains.Reset{Guest: true, Reason: ev.Reason}
		}
	case domains.GuestPanicked:
		p = domains.Crashed{Reason: "guest-panicked", Action: ev.Reason, Info: ev.Info}
		if d.Config.KeepsPanicked() && d.State != domains.StateCrashed {
			// After the fold lock is released: the policy's dump job
			// records through it (oncrash.go).
			defer func() { go s.crashPolicy(h, d.Config) }()
		}
	case domains.GuestShutdown:
		if d.State == domains.StateCrashed || d.State == domains.StateShutdown {
			return // the panic or an earlier SHUTDOWN already says why
		}
		r := domains.ShutdownHost
		if ev.Guest {
			r = domains.ShutdownGuest
		}
		p = domains.Shutdown{Reason: r, QEMUReason: ev.Reason}
	case domains.GuestStop, domains.GuestResume:
		p = s.runDiff(ctx, h, d)
	case domains.GuestDeviceDeleted, domains.GuestDeviceUnplugError:
		p = s.deviceHint(ctx, h, d, ev) // devices.go
	}
	if p == nil {
		return
	}
	if _, ok := domains.Next(d.State, p.EventType()); !ok {
		return
	}
	// The fact happened when QEMU reported it; re-read states happened now.
	at := ev.Time
	if ev.Kind == domains.GuestStop || ev.Kind == domains.GuestResume {
		at = time.Time{}
	}
	s.record(ctx, h.id, at, p)
	if ev.Kind == domains.GuestShutdown {
		s.fakeReboot(ctx, h) // a reboot pending: reset instead of stop
	}
}

// runDiff re-reads whether the vCPUs run and returns the event that brings
// the projection in line, or nil.
func (s *Service) runDiff(ctx context.Context, h *guestHandle, d domains.Domain) domains.Payload {
	st, err := h.guest.Status(ctx)
	if err != nil {
		return nil
	}
	switch {
	case st.Running && d.State == domains.StatePaused:
		return domains.Resumed{Reason: "unpaused"}
	case !st.Running && d.State == domains.StateRunning:
		switch st.Status {
		case "paused", "suspended":
			return domains.Paused{Reason: domains.PauseUnknown}
		case "io-error":
			return domains.Paused{Reason: domains.PauseIOError}
		case "finish-migrate", "postmigrate", "inmigrate":
			return domains.Paused{Reason: domains.PauseMigration}
		}
	}
	return nil
}

// exited records QEMU's end, unless a command already did (destroy).
func (s *Service) exited(h *guestHandle) {
	unlock := s.foldLock(h.id)
	if unlock == nil {
		return
	}
	defer unlock()
	d, ok := s.current(h)
	s.forget(h.id, h)
	if !ok {
		return
	}
	x := h.guest.Exit()
	detail := "QEMU exited with status " + fmt.Sprint(x.Code)
	if x.Signaled || x.Err != "" {
		detail = "QEMU ended: " + x.Err
	}
	reason := domains.StopCrashed
	switch d.State {
	case domains.StateShutdown:
		reason, detail = domains.StopShutdown, ""
	case domains.StateCrashed:
		detail = "guest panicked"
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.hintTO)
	defer cancel()
	s.record(ctx, h.id, time.Time{}, domains.Stopped{Reason: reason, Detail: detail})
}

// record appends a guest-reported fact, retrying a failing log (a fact
// QEMU reported once is not reported again) for up to factTimeout, as long
// as the fact still fits the domain's state. A full disk breaks the log
// until the store recovers, which takes as long as the disk stays full:
// giving up sooner left the log saying "running" over a QEMU that had
// exited (TestGuestFactsOutlastABrokenLog). The caller holds the domain's
// lock; commands on the domain could not append meanwhile anyway.
func (s *Service) record(ctx context.Context, id uuid.UUID, at time.Time, p domains.Payload) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), factTimeout)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		_, err := s.commitAt(ctx, at, "", id, p)
		if err == nil {
			return
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		}
		s.mu.RLock()
		d, ok := s.proj.Get(id)
		s.mu.RUnlock()
		if _, legal := domains.Next(d.State, p.EventType()); !ok || !legal {
			return // the log moved on (caught up): the fact no longer applies
		}
	}
}

// factTimeout bounds how long record retries one fact.
const factTimeout = 10 * time.Minute

// monitorGrace is how long a watcher waits, after QMP went away, for QEMU
// to exit before it concludes that only the monitor was lost.
const monitorGrace = time.Second

// reconnect re-attaches to a QEMU whose monitor connection was lost while
// it kept running, and records what changed meanwhile (as at agent start).
func (s *Service) reconnect(h *guestHandle) {
	s.forget(h.id, h)
	_ = h.guest.Detach()
	for wait := 200 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
		err := s.recoverOne(ctx, h.id)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-time.After(wait):
		case <-s.closed:
			return
		}
	}
}

// Recover records jobs the last agent left running as failed
// (interrupted), reattaches to guests that kept running while the agent
// was away and records what changed meanwhile: their run state, an RTC the
// guest moved, or QEMU's disappearance.
func (s *Service) Recover(ctx context.Context) error {
	// Jobs never survive their agent: the log records each as failed.
	jobErr := s.interrupted(ctx)
	if s.driver == nil {
		return jobErr
	}
	// Before any QEMU is reattached or settled: an incoming one is paused
	// and would pass for a started guest.
	errs := []error{jobErr, s.recoverIncoming(ctx)}
	rows := s.Rows("")
	each := make([]error, len(rows)) // in the rows' order, whatever the finishing order
	sem := make(chan struct{}, recoverParallel)
	var wg sync.WaitGroup
	for i, r := range rows {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
			defer cancel()
			var err error
			if r.State.Active() {
				err = s.recoverOne(rctx, r.UUID)
			} else {
				err = s.settleOne(rctx, r.UUID)
			}
			if err != nil {
				each[i] = fmt.Errorf("domain %q: %w", r.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, each...)...)
}

// recoverTimeout bounds reattaching to one guest: a QEMU that greets but
// never answers must not hold up the agent.
const recoverTimeout = 30 * time.Second

// recoverParallel is how many domains Recover works on at once. Each
// waits mostly on its QEMU (the QMP greeting, a status query) and holds
// only its own domain; one after another, 100 guests' waits added up
// before the agent was ready (TestRecoverReattachesTogether).
const recoverParallel = 8

func (s *Service) recoverOne(ctx context.Context, id uuid.UUID) error {
	// The recover job holds the domain until the guest is watched, so no
	// command can reach QEMU in between (it serves one QMP client at a time).
	d, release, err := s.acquire(ctx, id.String(), domains.JobRecover, "")
	if errors.Is(err, domains.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// A guest that panicked while no agent watched it gets its on_crash
	// policy now, once it is watched and the recover job has let go of
	// the domain (the policy's dump is a job of its own): deferred first,
	// so it runs after release and watch.
	var panicked bool
	defer func() {
		if h := s.guest(id); panicked && h != nil {
			go s.crashPolicy(h, d.Config)
		}
	}()
	defer release()
	if !d.State.Active() || s.guest(id) != nil {
		return nil
	}
	g, err := s.driver.Attach(ctx, d.Config)
	if errors.Is(err, domains.ErrNotFound) {
		// Not by its pid file: let the driver find what is left, kill it
		// or hand it back, and clean the run files of a dead guest.
		g, err = s.settle(ctx, d.Config)
	}
	if errors.Is(err, domains.ErrNotFound) {
		_, err = s.commit(ctx, "", id, domains.Stopped{Reason: domains.StopCrashed, Detail: "QEMU was gone when the agent reconnected"})
		return err
	}
	if g == nil {
		return err
	}
	// Whatever is recorded below, the guest ends up watched: a failed
	// append must not leave a QEMU whose exit nobody notices.
	defer s.watch(id, g)
	errs := []error{err}
	if err := s.finishReboot(ctx, id, g, d); err != nil { // reboot.go
		errs = append(errs, err)
	}
	if p := s.runDiff(ctx, &guestHandle{id: id, guest: g}, d); p != nil {
		if _, err := s.commit(ctx, "", id, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.deviceDiff(ctx, id, g, d); err != nil { // devices.go
		errs = append(errs, err)
	}
	st, err := g.Status(ctx)
	if err == nil && st.Status == "guest-panicked" && d.Config.KeepsPanicked() {
		// It panicked unwatched, or the last agent died inside the
		// policy (then the policy runs again, dump included).
		var cerr error
		if d.State != domains.StateCrashed {
			_, cerr = s.commit(ctx, "", id, domains.Crashed{Reason: "guest-panicked", Info: "found panicked when the agent reconnected"})
			errs = append(errs, cerr)
		}
		panicked = cerr == nil && d.Config.CrashAction() != domains.CrashPreserve
	}
	if err == nil && !st.RTC.IsZero() && d.Live != nil {
		adj := int64(st.RTC.Sub(s.clock.Now()).Round(time.Second) / time.Second)
		if diff := adj - d.Live.RTC; diff > 2 || diff < -2 {
			if _, err := s.commit(ctx, "", id, domains.RTCChanged{Offset: adj - d.Live.ClockBase, Adjustment: adj}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// settle asks the driver, if it can, to resolve a guest's leftovers.
func (s *Service) settle(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	if st, ok := s.driver.(domains.Settler); ok {
		return st.Settle(ctx, cfg)
	}
	return nil, domains.Errorf(domains.CodeNotFound, "domain %q: no running QEMU", cfg.Name)
}

// settleOne resolves a QEMU of a domain the log shows shut off: the agent
// died during its start. One that completed its start runs the guest
// already, so it is recorded as started and watched; the driver kills any
// other (see domains.Settler).
func (s *Service) settleOne(ctx context.Context, id uuid.UUID) error {
	d, release, err := s.acquire(ctx, id.String(), domains.JobRecover, "")
	if errors.Is(err, domains.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	if d.State.Active() || s.guest(id) != nil {
		return nil
	}
	g, err := s.settle(ctx, d.Config)
	if errors.Is(err, domains.ErrNotFound) {
		return nil
	}
	if g == nil {
		return err
	}
	// The base a start now would use: the same as at that start, unless
	// the host's zone offset changed in between (localtime clocks only).
	started := domains.Started{Reason: domains.StartBooted, Accel: g.Accel(), PID: g.PID(), ClockBase: domains.ClockBase(d.Config.Clock, s.clock.Now())}
	if _, cerr := s.commit(ctx, "", id, started); cerr != nil {
		// As in Start: a guest whose start is not on record must not run.
		_ = g.Kill(ctx)
		return errors.Join(err, cerr)
	}
	s.watch(id, g)
	return err
}
