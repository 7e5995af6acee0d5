package owner

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Live migration between two agents, the destination's side: prepare
// defines the domain from the config the source sent and starts an
// asynchronous migrate job, which starts QEMU with -incoming on a fresh
// all-zero RAM file and listens; finish hands it the source's grant;
// cancel (or job abort, or its QEMU's end) tears it down before that.

// inbound is a prepared incoming migration, waiting for finish or cancel.
type inbound struct {
	id     string // the source's job ID
	source string
	finish chan finishCall
	cancel chan string
	done   chan struct{} // closed when the job's run returned
}

type finishCall struct {
	req   domains.MigrationFinish
	reply chan finishReply // buffered: the job never blocks on it
}

type finishReply struct {
	res domains.MigrationFinished
	err error
}

type prepared struct {
	res domains.MigrationPrepared
	err error
}

func (s *Service) inboundOf(id uuid.UUID, migration string) (*inbound, error) {
	s.lmu.Lock()
	in := s.inbound[id]
	s.lmu.Unlock()
	if in == nil || in.id != migration {
		return nil, domains.Errorf(domains.CodeNotFound, "no incoming migration %s of domain %s here", domains.Quote(migration), id)
	}
	return in, nil
}

// MigrationPrepare is the destination's prepare: it returns once QEMU
// listens (the URI to stream to), or with the error that tore it down.
func (s *Service) MigrationPrepare(ctx context.Context, req domains.MigrationPrepare) (domains.MigrationPrepared, error) {
	switch {
	case req.ID == "" || len(req.ID) > 128:
		return domains.MigrationPrepared{}, invalid("migrate-prepare: \"id\" must be 1-128 bytes")
	case !domains.ValidName(req.Source) || req.Source == s.host:
		return domains.MigrationPrepared{}, invalid("migrate-prepare: source host %s: must be another host's name", domains.Quote(req.Source))
	}
	if err := checkListen(req.Listen); err != nil {
		return domains.MigrationPrepared{}, err
	}
	if req.Listen == "" {
		req.Listen = defaultListen
	}
	if _, ok := s.driver.(incomingDriver); !ok || s.driver == nil {
		return domains.MigrationPrepared{}, domains.Errorf(domains.CodeUnavailable, "this agent's hypervisor cannot take an incoming migration")
	}
	cfg, err := domains.DecodeConfig(req.Config)
	if err != nil {
		return domains.MigrationPrepared{}, invalid("migrate-prepare: config: %w", err)
	}
	cfg = cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return domains.MigrationPrepared{}, invalid("migrate-prepare: config: %w", err)
	}
	id := cfg.UUID
	known := uint64(0)
	definedHere := true
	if cur, err := s.Get(id.String()); err == nil {
		if cur.State.Active() {
			return domains.MigrationPrepared{}, domains.Errorf(domains.CodeConflict, "domain %q is %s here already", cur.Config.Name, cur.State)
		}
		known, definedHere = cur.OwnershipEpoch(), false
	}
	if _, err := s.Define(ctx, "", cfg); err != nil && !s.definedAs(cfg) {
		return domains.MigrationPrepared{}, err
	}
	in := &inbound{id: req.ID, source: req.Source, finish: make(chan finishCall), cancel: make(chan string, 1), done: make(chan struct{})}
	s.lmu.Lock()
	if s.inbound[id] != nil {
		s.lmu.Unlock()
		return domains.MigrationPrepared{}, domains.Errorf(domains.CodeConflict, "domain %q has an incoming migration already", cfg.Name)
	}
	s.inbound[id] = in
	s.lmu.Unlock()
	ready := make(chan prepared, 1)
	_, err = s.RunAsync(ctx, "", id.String(), domains.JobMigrate, nil, func(ctx context.Context, j *Job) error {
		defer func() {
			s.lmu.Lock()
			delete(s.inbound, id)
			s.lmu.Unlock()
			close(in.done)
		}()
		r := &incoming{s: s, j: j, in: in, req: req, definedHere: definedHere}
		return r.run(ctx, max(known, req.Epoch), ready)
	})
	if err != nil {
		s.lmu.Lock()
		delete(s.inbound, id)
		s.lmu.Unlock()
		if definedHere {
			_, _ = s.Undefine(context.WithoutCancel(ctx), "", id.String())
		}
		return domains.MigrationPrepared{}, err
	}
	select {
	case p := <-ready:
		return p.res, p.err
	case <-ctx.Done():
		// The source gives up and cancels; the job tears down then.
		return domains.MigrationPrepared{}, domains.Errorf(domains.CodeUnavailable, "migrate-prepare of %q: %w", cfg.Name, ctx.Err())
	}
}

// MigrationFinish hands the prepared destination the source's grant and
// returns whether the guest runs here, or the release of the grant.
func (s *Service) MigrationFinish(ctx context.Context, req domains.MigrationFinish) (domains.MigrationFinished, error) {
	id, err := uuid.Parse(req.Domain)
	if err != nil {
		return domains.MigrationFinished{}, invalid("migrate-finish: domain %s: must be a UUID", domains.Quote(req.Domain))
	}
	in, err := s.inboundOf(id, req.ID)
	if err != nil {
		// A repetition, or this agent restarted (migrate_recover.go).
		return s.finishedFromLog(id, req)
	}
	call := finishCall{req: req, reply: make(chan finishReply, 1)}
	select {
	case in.finish <- call:
	case <-in.done:
		return s.finishedFromLog(id, req)
	case <-ctx.Done():
		return domains.MigrationFinished{}, domains.Errorf(domains.CodeUnavailable, "migrate-finish: %w", ctx.Err())
	}
	select {
	case r := <-call.reply:
		return r.res, r.err
	case <-ctx.Done():
		return domains.MigrationFinished{}, domains.Errorf(domains.CodeUnavailable, "migrate-finish: %w", ctx.Err())
	}
}

// MigrationCancel tears down a prepared incoming migration (before the
// grant; after it, only the destination decides).
func (s *Service) MigrationCancel(_ context.Context, req domains.MigrationCancel) error {
	id, err := uuid.Parse(req.Domain)
	if err != nil {
		return invalid("migrate-cancel: domain %s: must be a UUID", domains.Quote(req.Domain))
	}
	in, err := s.inboundOf(id, req.ID)
	if err != nil {
		return err
	}
	select {
	case in.cancel <- domains.Quote(req.Reason):
	default: // one cancel is enough
	}
	return nil
}

// incoming is the destination's migrate job.
type incoming struct {
	s           *Service
	j           *Job
	in          *inbound
	req         domains.MigrationPrepare
	definedHere bool
	mc          *machine
	g           domains.Guest
}

func (r *incoming) run(ctx context.Context, epoch uint64, ready chan<- prepared) error {
	m, err := domains.NewMigration(domains.RoleDestination, r.req.Source, epoch)
	if err != nil {
		ready <- prepared{err: err}
		return err
	}
	r.mc = &machine{m: m, j: r.j}
	uri, err := r.prepare(ctx)
	if err != nil {
		err = r.tearDown(ctx, fmt.Errorf("prepare: %w", err))
		ready <- prepared{err: err}
		return err
	}
	ready <- prepared{res: domains.MigrationPrepared{URI: uri, Epoch: r.mc.m.Epoch}}
	select {
	case <-ctx.Done():
		return r.tearDown(ctx, fmt.Errorf("prepared: %w", context.Cause(ctx)))
	case why := <-r.in.cancel:
		return r.tearDown(ctx, fmt.Errorf("the source cancelled: %s", why))
	case <-r.g.Done():
		return r.tearDown(ctx, fmt.Errorf("prepared: QEMU exited (%+v)", r.g.Exit()))
	case call := <-r.in.finish:
		res, err := r.finish(ctx, call.req)
		call.reply <- finishReply{res: res, err: err}
		if err == nil && res.Release != nil {
			err = errors.New(res.Release.Reason)
		}
		return err
	}
}

func (r *incoming) prepare(ctx context.Context) (string, error) {
	if err := r.mc.step(ctx, domains.MigPreparing, nil); err != nil {
		return "", err
	}
	d := r.j.Domain()
	// The -rtc base QEMU starts with: RTC_CHANGE offsets here are
	// relative to it (the guest's RTC itself comes in the stream).
	base := domains.ClockBase(d.Config.Clock, r.s.clock.Now())
	cfg, err := r.s.confined(d.Config) // its files, checked here too (confine.go)
	if err != nil {
		return "", err
	}
	g, err := r.s.driver.(incomingDriver).StartIncomingGuest(ctx, domains.StartSpec{Config: cfg, ClockBase: base, Paused: true})
	if err != nil {
		return "", err
	}
	r.g = g
	li, ok := g.(LiveIncoming)
	if !ok {
		return "", errors.New("its QEMU cannot take a live migration")
	}
	uri, err := li.ListenIncoming(ctx, r.req.Listen)
	if err != nil {
		return "", err
	}
	return uri, r.mc.step(ctx, domains.MigPrepared, nil)
}

// finish takes the grant, waits for the stream's end and runs the guest.
// A failure tears down and answers with the release of the grant.
func (r *incoming) finish(ctx context.Context, f domains.MigrationFinish) (domains.MigrationFinished, error) {
	next, ev, err := r.mc.m.Receive(f.Source, f.Epoch)
	if err != nil {
		// Not a grant this machine takes: no ownership moved, nothing to
		// release; the source keeps waiting in handed-off.
		return domains.MigrationFinished{}, errors.Join(err, r.tearDown(ctx, err))
	}
	if err := r.mc.commit(ctx, next, ev); err != nil {
		return r.release(ctx, f, err)
	}
	if err := r.g.(LiveIncoming).WaitIncoming(ctx); err != nil {
		return r.release(ctx, f, fmt.Errorf("finish: %w", err))
	}
	d := r.j.Domain()
	base := domains.ClockBase(d.Config.Clock, r.s.clock.Now())
	next, ev, err = r.mc.m.Step(domains.MigFinished, nil)
	if err != nil {
		return r.release(ctx, f, err)
	}
	ps := []domains.Payload{domains.Started{Reason: domains.StartMigrated, Accel: r.g.Accel(), PID: r.g.PID(), ClockBase: base}}
	if r.req.RTC != base {
		// The guest's RTC came with the stream; record where it stands.
		ps = append(ps, domains.RTCChanged{Offset: r.req.RTC - base, Adjustment: r.req.RTC})
	}
	if f.Paused {
		ps = append(ps, domains.Paused{Reason: domains.PauseUser})
	}
	ps = append(ps, ev)
	lc, ok := r.g.(lifecycle)
	if !ok {
		return r.release(ctx, f, errors.New("finish: its QEMU cannot resume"))
	}
	uctx, done := undoCtx(ctx)
	defer done()
	resumed := false
	err = r.j.act(uctx, func() error {
		if f.Paused {
			return nil
		}
		if err := lc.Resume(uctx); err != nil {
			return err
		}
		resumed = true
		return nil
	}, ps...)
	if err != nil && !resumed {
		return r.release(ctx, f, fmt.Errorf("finish: %w", err))
	}
	if err != nil {
		// It ran here, unrecorded: it must not run on, and having run, it
		// gives no release. The source stays paused; the operator looks.
		_ = r.g.Kill(uctx)
		_ = r.mc.step(uctx, domains.MigError, fmt.Errorf("finish: record the start: %w", err))
		return domains.MigrationFinished{}, fmt.Errorf("finish: the guest resumed here but its start was not recorded (%w): QEMU killed, no release", err)
	}
	r.mc.m = next
	r.s.watch(d.Config.UUID, r.g)
	return domains.MigrationFinished{Finished: true}, nil
}

// release tears down after the grant and gives it back.
func (r *incoming) release(ctx context.Context, f domains.MigrationFinish, cause error) (domains.MigrationFinished, error) {
	if err := r.tearDown(ctx, cause); err != nil && r.mc.m.Phase != domains.MigTornDown {
		// Not torn down (QEMU may live): no release. Never both.
		return domains.MigrationFinished{}, err
	}
	rel := r.mc.m.Release(r.s.host, cause.Error())
	if rel == nil || rel.Epoch != f.Epoch {
		// The grant was never recorded here, and QEMU is gone: the grant
		// goes back as it came.
		rel = &domains.MigrationRelease{Host: r.s.host, Epoch: f.Epoch, Reason: cause.Error()}
	}
	return domains.MigrationFinished{Release: rel}, nil
}

// tearDown kills the destination's QEMU, records torn-down and drops the
// definition it made for the migration (with the job's end).
func (r *incoming) tearDown(ctx context.Context, cause error) error {
	if ctx.Err() != nil {
		cause = fmt.Errorf("%w (%w)", context.Cause(ctx), cause)
	}
	uctx, done := undoCtx(ctx)
	defer done()
	if r.g != nil {
		err := r.g.Kill(uctx)
		if err == nil {
			select {
			case <-r.g.Done():
			case <-uctx.Done():
				err = uctx.Err()
			}
		}
		if err != nil {
			return errors.Join(cause, r.mc.step(uctx, domains.MigError, fmt.Errorf("%w; kill QEMU: %w", cause, err)))
		}
	}
	if r.definedHere {
		r.j.final = append(r.j.final, domains.Undefined{})
	}
	if r.mc.m.Phase == domains.MigIdle {
		return cause // nothing was logged on this side yet
	}
	return errors.Join(cause, r.mc.step(uctx, domains.MigTornDown, cause))
}
