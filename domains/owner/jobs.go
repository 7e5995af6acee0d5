package owner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// The job model (docs/architecture.md, "Jobs"). Each domain has one slot
// for the job that changes it: a synchronous job (a command) holds the slot
// and the domain's fold lock for its whole run; an asynchronous job holds
// only the slot, and takes the fold lock for each fact it records, so QMP
// hints are folded while it runs. A command that finds an asynchronous job
// is refused at once; one that finds a synchronous job waits, as long as
// its context allows.

// slot is a domain's place for its one changing job.
type slot struct {
	// fold is a lock (a channel, so that waiting honours a context): held
	// by a synchronous job for its whole run, by a hint or an
	// asynchronous job for the folding of one fact.
	fold chan struct{}
	job  *job // guarded by Service.lmu
}

// job is a running job.
type job struct {
	info   domains.JobInfo // Async and Progress change under mu
	done   chan struct{}   // closed when the job has ended
	asyncC chan struct{}   // closed when a synchronous start became an async job

	mu       sync.Mutex
	cancel   context.CancelCauseFunc // async only
	reason   string                  // why it was cancelled: aborted, interrupted
	lastSent time.Time               // last progress handed to OnProgress
}

func (j *job) snapshot() domains.JobInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	info := j.info
	if j.info.Progress != nil {
		p := *j.info.Progress
		info.Progress = &p
	}
	return info
}

func (j *job) async() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.info.Async
}

// abort cancels an asynchronous job; the first reason given stands.
func (j *job) abort(reason string, cause error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cancel == nil {
		return
	}
	if j.reason == "" {
		j.reason = reason
	}
	j.cancel(cause)
}

// busy is the error for a command that finds an asynchronous job running.
func busy(name string, info domains.JobInfo) error {
	return domains.Errorf(domains.CodeConflict, "domain %q is busy: %s job %s is running (vmledger job info %s)", name, info.Kind, info.ID, name)
}

func (s *Service) slotOf(id uuid.UUID) *slot {
	sl, ok := s.slots[id]
	if !ok {
		sl = &slot{fold: make(chan struct{}, 1)}
		s.slots[id] = sl
	}
	return sl
}

// enter starts a synchronous job of kind on domain id: it waits, as long
// as ctx allows, for a synchronous job to end, refuses at once while an
// asynchronous one runs, and then takes the fold lock. A caller whose
// context ended while waiting never runs. The returned release ends the
// job.
func (s *Service) enter(ctx context.Context, id uuid.UUID, name string, kind domains.JobKind, cmdID string) (release func(), err error) {
	for {
		s.lmu.Lock()
		sl := s.slotOf(id)
		cur := sl.job
		if cur == nil {
			j := &job{done: make(chan struct{}), asyncC: make(chan struct{}),
				info: domains.JobInfo{Domain: id.String(), ID: uuid.NewString(), Kind: kind, CommandID: cmdID, Started: s.clock.Now()}}
			sl.job = j
			s.lmu.Unlock()
			return s.lockFold(ctx, sl, j, name)
		}
		s.lmu.Unlock()
		if cur.async() {
			return nil, busy(name, cur.snapshot())
		}
		select {
		case <-cur.done:
		case <-cur.asyncC:
		case <-ctx.Done():
			info := cur.snapshot()
			return nil, domains.Errorf(domains.CodeUnavailable, "domain %q: waited for its %s job %s: %w", name, info.Kind, info.ID, ctx.Err())
		}
	}
}

func (s *Service) lockFold(ctx context.Context, sl *slot, j *job, name string) (func(), error) {
	took := false
	select {
	case sl.fold <- struct{}{}:
		took = true
	case <-ctx.Done():
	}
	// Checked after the lock too: when both were ready, select chose at
	// random, and a caller past its deadline must not run.
	if err := ctx.Err(); err != nil {
		if took {
			<-sl.fold
		}
		s.finish(sl, j)
		return nil, domains.Errorf(domains.CodeUnavailable, "domain %q: waited for its fold lock: %w", name, err)
	}
	return func() {
		<-sl.fold
		s.finish(sl, j)
	}, nil
}

// finish ends a job: the slot is free and waiters wake.
func (s *Service) finish(sl *slot, j *job) {
	s.lmu.Lock()
	if sl.job == j {
		sl.job = nil
	}
	s.lmu.Unlock()
	close(j.done)
}

// foldLock takes a domain's fold lock for one hint, between synchronous
// jobs; nil when the service is closing.
func (s *Service) foldLock(id uuid.UUID) func() {
	s.lmu.Lock()
	sl := s.slotOf(id)
	s.lmu.Unlock()
	select {
	case sl.fold <- struct{}{}:
		return func() { <-sl.fold }
	case <-s.closed:
		return nil
	}
}

// current job of a domain, nil when none.
func (s *Service) currentJob(id uuid.UUID) *job {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if sl, ok := s.slots[id]; ok {
		return sl.job
	}
	return nil
}

// JobInfo returns the domain's running job (synchronous or asynchronous,
// with its last progress), nil when it has none.
func (s *Service) JobInfo(ref string) (*domains.JobInfo, error) {
	d, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	j := s.currentJob(d.Config.UUID)
	if j == nil {
		return nil, nil
	}
	info := j.snapshot()
	return &info, nil
}

// AbortJob aborts the domain's asynchronous job and waits, as long as ctx
// allows, until it has ended (recorded as job-failed, reason aborted).
func (s *Service) AbortJob(ctx context.Context, ref string) (domains.JobInfo, error) {
	d, err := s.Get(ref)
	if err != nil {
		return domains.JobInfo{}, err
	}
	name := d.Config.Name
	j := s.currentJob(d.Config.UUID)
	if j == nil {
		return domains.JobInfo{}, domains.Errorf(domains.CodeNotFound, "domain %q has no job running", name)
	}
	info := j.snapshot()
	if !info.Async {
		return domains.JobInfo{}, domains.Errorf(domains.CodeConflict, "domain %q: its %s job %s is synchronous and cannot be aborted", name, info.Kind, info.ID)
	}
	j.abort(domains.JobAborted, errors.New("aborted by request"))
	select {
	case <-j.done:
		return j.snapshot(), nil
	case <-ctx.Done():
		return domains.JobInfo{}, domains.Errorf(domains.CodeUnavailable, "domain %q: %s job %s was told to abort but has not ended yet: %w", name, info.Kind, info.ID, ctx.Err())
	}
}

// abortGrace is how long destroy waits for an aborted job to wind down
// before it kills QEMU from under it.
const abortGrace = 5 * time.Second

// abortForDestroy ends a domain's asynchronous job before destroy kills
// its QEMU: abort, wait a moment, then kill (the job then fails on its own
// QEMU's end), and wait for the job to end.
func (s *Service) abortForDestroy(ctx context.Context, id uuid.UUID, name string) error {
	j := s.currentJob(id)
	if j == nil || !j.async() {
		return nil
	}
	j.abort(domains.JobAborted, errors.New("the domain is being destroyed"))
	t := time.NewTimer(abortGrace)
	defer t.Stop()
	select {
	case <-j.done:
		return nil
	case <-t.C:
		if h := s.guest(id); h != nil {
			_ = h.guest.Kill(ctx)
		}
	case <-ctx.Done():
	}
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		info := j.snapshot()
		return domains.Errorf(domains.CodeUnavailable, "destroy %q: its %s job %s has not ended: %w", name, info.Kind, info.ID, ctx.Err())
	}
}

// Job is what an asynchronous job's function gets: who it is, the domain
// and its guest, a way to record facts and one to report progress.
type Job struct {
	s      *Service
	j      *job
	sl     *slot
	domain domains.Domain
	guest  domains.Guest
	// final are facts recorded with the job's end, in the same append
	// (a migration's undefined: job-completed must come first).
	final []domains.Payload
}

// ID is the job's ID, as in its events.
func (j *Job) ID() string { return j.j.info.ID }

// Kind is what the job does.
func (j *Job) Kind() domains.JobKind { return j.j.info.Kind }

// Domain is the domain as it was when the job started.
func (j *Job) Domain() domains.Domain { return j.domain }

// Guest is the domain's running QEMU, nil when it has none (restore). The
// job asks it for the capability it needs, by a type assertion on an
// interface it declares itself (docs/architecture.md, "Ports").
func (j *Job) Guest() domains.Guest { return j.guest }

// Record appends facts the job brought about (paused for a save, stopped
// after it), with the job's command ID, between hints. The append is not
// cut short by ctx ending once it has begun (events are facts).
func (j *Job) Record(ctx context.Context, ps ...domains.Payload) error {
	select {
	case j.sl.fold <- struct{}{}:
	case <-ctx.Done():
		return domains.Errorf(domains.CodeUnavailable, "record %s: %w", j.Kind(), ctx.Err())
	}
	defer func() { <-j.sl.fold }()
	// The events name the command that started the job; the command table
	// already holds that command's result (job-started).
	_, err := j.s.appendFold(ctx, time.Time{}, "", j.j.info.CommandID, j.domain.Config.UUID, ps...)
	return err
}

// progressEvery bounds how often a job's progress goes on the bus.
const progressEvery = 250 * time.Millisecond

// Progress reports how far the job is. `job info` shows the last report;
// the bus gets at most one each progressEvery (Options.OnProgress). A
// zero Rate is computed from the bytes done since the job started.
func (j *Job) Progress(p domains.JobProgress) {
	now := j.s.clock.Now()
	p.Time = now
	jb := j.j
	jb.mu.Lock()
	if el := now.Sub(jb.info.Started).Seconds(); p.Rate == 0 && el > 0 {
		p.Rate = uint64(float64(p.Done) / el)
	}
	jb.info.Progress = &p
	send := now.Sub(jb.lastSent) >= progressEvery
	if send {
		jb.lastSent = now
	}
	jb.mu.Unlock()
	if send && j.s.onProgress != nil {
		j.s.onProgress(j.domain.Config.UUID, jb.snapshot())
	}
}

// RunAsync starts an asynchronous job of kind (save, restore, migrate,
// dump) on the domain and returns once its job-started event is recorded;
// run then goes on in the background with a context of its own, which
// `job abort`, destroy and the agent stopping cancel (context.Cause says
// why). While it runs, reads answer, hints are folded, and changing
// commands are refused naming the job. When run returns, job-completed
// (nil) or job-failed (reason aborted, interrupted or error, with the
// error's text) is recorded and the slot is free. run undoes what it
// changed when it fails (resumes a guest it paused, ...).
//
// The result carries the job's ID (Result.Job); a retry with the same
// command ID returns it without starting a second job. args are the
// request's parameters (a path, options): the command ID is bound to them
// with the kind and domain, so an ID reused for another request is a
// conflict.
func (s *Service) RunAsync(ctx context.Context, cmdID, ref string, kind domains.JobKind, args any, run func(ctx context.Context, j *Job) error) (domains.Result, error) {
	if !kind.Async() {
		return domains.Result{}, domains.Errorf(domains.CodeInvalid, "%q is not an asynchronous job kind", kind)
	}
	return s.once(ctx, cmdID, requestDigest(string(kind), ref, args), func() (domains.Result, error) {
		d, release, err := s.acquire(ctx, ref, kind, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		id := d.Config.UUID
		s.lmu.Lock()
		sl, jb := s.slots[id], s.slots[id].job
		s.lmu.Unlock()
		res, err := s.commit(ctx, cmdID, id, domains.JobStarted{ID: jb.info.ID, Kind: kind})
		if err != nil {
			release()
			return domains.Result{}, err
		}
		jctx, cancel := context.WithCancelCause(context.Background())
		jb.mu.Lock()
		jb.info.Async, jb.cancel = true, cancel
		jb.mu.Unlock()
		close(jb.asyncC)
		var g domains.Guest
		if h := s.guest(id); h != nil {
			g = h.guest
		}
		handle := &Job{s: s, j: jb, sl: sl, domain: d, guest: g}
		s.lmu.Lock()
		s.wg.Add(1)
		select {
		case <-s.closed: // Close's stopJobs may have passed this job by
			jb.abort(domains.JobInterrupted, errors.New("the agent is stopping"))
		default:
		}
		s.lmu.Unlock()
		<-sl.fold // the job holds only the slot from now on
		go func() {
			defer s.wg.Done()
			defer cancel(nil)
			err := run(jctx, handle)
			s.endAsync(handle, err)
		}()
		return res, nil
	})
}

// endAsync records how an asynchronous job ended and frees the slot. The
// recording is retried a few times: a job whose end is not on record
// stays "running" in the projection until the next agent start records
// it as interrupted.
func (s *Service) endAsync(h *Job, runErr error) {
	jb := h.j
	var p domains.Payload = domains.JobCompleted{ID: jb.info.ID, Kind: jb.info.Kind}
	if runErr != nil {
		jb.mu.Lock()
		reason := jb.reason
		jb.mu.Unlock()
		if reason == "" {
			reason = domains.JobError
		}
		p = domains.JobFailed{ID: jb.info.ID, Kind: jb.info.Kind, Reason: reason, Error: runErr.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	for try, wait := 0, 100*time.Millisecond; try < 5; try, wait = try+1, wait*2 {
		err := h.Record(ctx, append([]domains.Payload{p}, h.final...)...)
		if err == nil {
			break
		}
		if try == 4 || ctx.Err() != nil {
			break // Recover at the next start records it as interrupted
		}
		time.Sleep(wait)
	}
	s.finish(h.sl, jb)
}

// interrupted records job-failed (interrupted) for every job the log says
// was running when the last agent stopped: no job survives its agent.
func (s *Service) interrupted(ctx context.Context) error {
	var errs []error
	for _, d := range s.List() {
		if d.Job == nil || s.currentJob(d.Config.UUID) != nil {
			continue
		}
		release, err := s.enter(ctx, d.Config.UUID, d.Config.Name, domains.JobRecover, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = s.commit(ctx, "", d.Config.UUID, domains.JobFailed{ID: d.Job.ID, Kind: d.Job.Kind,
			Reason: domains.JobInterrupted, Error: "the agent stopped while the job ran"})
		release()
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %q: record its interrupted %s job: %w", d.Config.Name, d.Job.Kind, err))
		}
	}
	return errors.Join(errs...)
}

// stopJobs interrupts every asynchronous job and waits for them to record
// their end (Close).
func (s *Service) stopJobs() {
	s.lmu.Lock()
	var running []*job
	for _, sl := range s.slots {
		if sl.job != nil {
			running = append(running, sl.job)
		}
	}
	s.lmu.Unlock()
	t := time.NewTimer(recordTimeout)
	defer t.Stop()
	for _, j := range running {
		if !j.async() {
			continue
		}
		j.abort(domains.JobInterrupted, errors.New("the agent is stopping"))
		select {
		case <-j.done:
		case <-t.C:
			return // the next agent records it as interrupted
		}
	}
}
