package owner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// pauser is the capability the test job asks of its guest, as a save
// would.
type pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// blockingJob is an asynchronous job body that works like a save: it
// pauses the guest and records it, reports progress, then blocks until
// released (done) or aborted (undone: the guest runs again).
type blockingJob struct {
	started chan *owner.Job
	release chan error
}

func newBlockingJob() *blockingJob {
	return &blockingJob{started: make(chan *owner.Job, 1), release: make(chan error, 1)}
}

func (b *blockingJob) run(ctx context.Context, j *owner.Job) error {
	g, ok := j.Guest().(pauser)
	if !ok {
		return errors.New("guest cannot pause")
	}
	if err := g.Pause(ctx); err != nil {
		return err
	}
	if err := j.Record(ctx, domains.Paused{Reason: domains.PauseSave}); err != nil {
		return err
	}
	j.Progress(domains.JobProgress{Phase: "memory", Done: 1 << 20, Total: 16 << 20})
	b.started <- j
	select {
	case err := <-b.release:
		return err
	case <-ctx.Done():
		// Undo on a context of its own: ctx is cancelled.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := g.Resume(uctx); err != nil {
			return err
		}
		if err := j.Record(uctx, domains.Resumed{Reason: "save-cancelled"}); err != nil {
			return err
		}
		return context.Cause(ctx)
	}
}

// startJob runs a blocking save on a running domain and waits until it
// blocks.
func (e *env) startJob(cfg domains.Config) (*blockingJob, *owner.Job, domains.Result) {
	e.t.Helper()
	b := newBlockingJob()
	res, err := e.svc.RunAsync(e.ctx, "save-1", cfg.Name, domains.JobSave, nil, b.run)
	if err != nil {
		e.t.Fatalf("RunAsync: %v", err)
	}
	select {
	case j := <-b.started:
		return b, j, res
	case <-time.After(10 * time.Second):
		e.t.Fatalf("the job never started: events %v", types(e.eventsAfter(0)))
	}
	return nil, nil, res
}

// waitJobEnd waits for the job's end event and the slot to be free.
func (e *env) waitJobEnd(cfg domains.Config, id string) domains.Event {
	e.t.Helper()
	for {
		next := e.log.Committed() // before reading: no commit slips between
		for _, ev := range e.eventsAfter(0) {
			switch p := ev.Payload.(type) {
			case domains.JobCompleted:
				if p.ID == id {
					e.waitSeq(ev.Seq)
					e.waitNoJob(cfg)
					return ev
				}
			case domains.JobFailed:
				if p.ID == id {
					e.waitSeq(ev.Seq)
					e.waitNoJob(cfg)
					return ev
				}
			}
		}
		select {
		case <-next:
		case <-time.After(10 * time.Second):
			e.t.Fatalf("job %s never ended; events %v", id, types(e.eventsAfter(0)))
		}
	}
}

func (e *env) waitNoJob(cfg domains.Config) {
	e.t.Helper()
	for {
		info, err := e.svc.JobInfo(cfg.Name)
		if err != nil {
			e.t.Fatal(err)
		}
		if info == nil {
			return
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("job %s still running", info.ID)
		case <-time.After(time.Millisecond):
		}
	}
}

// While an asynchronous job runs, reads answer, a guest's hint is folded,
// and every changing command is refused at once, naming the job; once it
// completes, commands work again.
func TestAsyncJobKeepsDomainWatchable(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", domains.Clock{Offset: domains.OffsetVariable})
	g := e.start(cfg)
	b, j, res := e.startJob(cfg)
	if res.Job != j.ID() || res.Job == "" {
		t.Fatalf("RunAsync result names job %q, the job is %q", res.Job, j.ID())
	}

	// info and history answer while the job blocks.
	d := e.get("web")
	if d.State != domains.StatePaused || d.Job == nil || d.Job.ID != j.ID() || d.Job.Kind != domains.JobSave {
		t.Fatalf("info during the job: state %s job %+v", d.State, d.Job)
	}
	hist, err := e.log.ReadDomain(e.ctx, cfg.UUID, 0, 0)
	if err != nil || !reflect.DeepEqual(types(hist), []domains.Type{domains.TypeDefined, domains.TypeStarted, domains.TypeJobStarted, domains.TypePaused}) {
		t.Fatalf("history during the job: %v %v", types(hist), err)
	}
	info, err := e.svc.JobInfo("web")
	if err != nil || info == nil || info.ID != j.ID() || !info.Async || info.CommandID != "save-1" ||
		info.Progress == nil || info.Progress.Phase != "memory" || info.Progress.Total != 16<<20 {
		t.Fatalf("job info: %+v %v", info, err)
	}

	// QMP events are folded as usual.
	seq := e.log.LastSeq()
	g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 120})
	e.waitSeq(seq + 1)
	if ev := e.lastEvent(); ev.Type != domains.TypeRTCChanged {
		t.Fatalf("hint during the job recorded %s", ev.Type)
	}

	// Changing commands are refused at once, naming the job's kind and ID.
	cmds := map[string]func(ctx context.Context) error{
		"resume":   func(ctx context.Context) error { _, err := e.svc.Resume(ctx, "", "web"); return err },
		"reset":    func(ctx context.Context) error { _, err := e.svc.Reset(ctx, "", "web"); return err },
		"shutdown": func(ctx context.Context) error { _, err := e.svc.Shutdown(ctx, "", "web"); return err },
		"define": func(ctx context.Context) error {
			c := cfg.Clone()
			c.MemoryMiB *= 2
			_, err := e.svc.Define(ctx, "", c)
			return err
		},
		"second job": func(ctx context.Context) error {
			_, err := e.svc.RunAsync(ctx, "", "web", domains.JobDump, nil, newBlockingJob().run)
			return err
		},
	}
	before := e.log.LastSeq()
	for name, cmd := range cmds {
		err := cmd(e.ctx) // e.ctx has 30 s: a queued command would block, not fail
		wantCode(t, err, domains.ErrConflict)
		if !strings.Contains(err.Error(), "save job "+j.ID()) {
			t.Errorf("%s: error %q does not name the save job %s", name, err, j.ID())
		}
	}
	if e.log.LastSeq() != before || g.CallCount("Reset") != 0 || g.CallCount("Powerdown") != 0 {
		t.Fatalf("refused commands acted: log %d→%d, calls %v", before, e.log.LastSeq(), g.Calls())
	}

	b.release <- nil
	end := e.waitJobEnd(cfg, j.ID())
	if p, ok := end.Payload.(domains.JobCompleted); !ok || p.Kind != domains.JobSave || end.CommandID != "save-1" {
		t.Fatalf("job end: %s %+v (command %q)", end.Type, end.Payload, end.CommandID)
	}
	if d := e.get("web"); d.Job != nil {
		t.Fatalf("job still in the projection after completion: %+v", d.Job)
	}
	if _, err := e.svc.Resume(e.ctx, "", "web"); err != nil {
		t.Fatalf("resume after the job: %v", err)
	}
}

// job abort ends the job with job-failed (aborted), after the job undid
// what it did: the domain runs again.
func TestAbortJob(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	e.start(cfg)
	_, j, _ := e.startJob(cfg)
	info, err := e.svc.AbortJob(e.ctx, "web")
	if err != nil || info.ID != j.ID() {
		t.Fatalf("AbortJob: %+v %v", info, err)
	}
	end := e.waitJobEnd(cfg, j.ID())
	p, ok := end.Payload.(domains.JobFailed)
	if !ok || p.Reason != domains.JobAborted || p.Error != "aborted by request" || p.Kind != domains.JobSave {
		t.Fatalf("job end after abort: %s %+v", end.Type, end.Payload)
	}
	if d := e.get("web"); d.State != domains.StateRunning || d.Job != nil {
		t.Fatalf("after abort: state %s job %+v; want running, no job", d.State, d.Job)
	}
	_, err = e.svc.AbortJob(e.ctx, "web")
	wantCode(t, err, domains.ErrNotFound)
}

// destroy during a job aborts the job first, then kills: the log says the
// job failed (aborted) before the domain stopped (destroyed).
func TestDestroyDuringJob(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	g := e.start(cfg)
	_, j, _ := e.startJob(cfg)
	if _, err := e.svc.Destroy(e.ctx, "", "web"); err != nil {
		t.Fatalf("destroy during the job: %v", err)
	}
	evs := e.eventsAfter(0)
	var tail []domains.Type
	for _, ev := range evs[len(evs)-3:] {
		tail = append(tail, ev.Type)
	}
	if want := []domains.Type{domains.TypeResumed, domains.TypeJobFailed, domains.TypeStopped}; !reflect.DeepEqual(tail, want) {
		t.Fatalf("events end with %v, want %v", tail, want)
	}
	if p := evs[len(evs)-2].Payload.(domains.JobFailed); p.ID != j.ID() || p.Reason != domains.JobAborted {
		t.Fatalf("job-failed %+v", p)
	}
	if d := e.get("web"); d.State != domains.StateShutoff || d.Job != nil || !g.Exited() {
		t.Fatalf("after destroy: state %s job %+v exited %v", d.State, d.Job, g.Exited())
	}
}

// A command waiting for a running (synchronous) job gives up when its
// deadline passes, with a timeout, and never runs afterwards. (With a
// mutex held across the driver call, it ran as soon as the start ended.)
func TestWaitingCommandHonoursDeadline(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	inStart, unblock := make(chan struct{}), make(chan struct{})
	e.drv.OnStart(func(domains.StartSpec, *domainstest.FakeGuest) {
		close(inStart)
		<-unblock
	})
	started := make(chan error, 1)
	go func() {
		_, err := e.svc.Start(e.ctx, "", "web", domains.StartOptions{})
		started <- err
	}()
	<-inStart
	info, err := e.svc.JobInfo("web")
	if err != nil || info == nil || info.Kind != domains.JobStart || info.Async {
		t.Fatalf("job info during start: %+v %v", info, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	defer cancel()
	bigger := cfg.Clone()
	bigger.MemoryMiB *= 2
	_, err = e.svc.Define(ctx, "", bigger)
	wantCode(t, err, domains.ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "start job") {
		t.Fatalf("waiting define: %v; want a deadline error naming the start job", err)
	}
	close(unblock)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	// Anything the define would have done is on the log by the time a
	// later command on the domain has run.
	if _, err := e.svc.Suspend(e.ctx, "", "web"); err != nil {
		t.Fatal(err)
	}
	if got, want := types(e.eventsAfter(0)), []domains.Type{domains.TypeDefined, domains.TypeStarted, domains.TypePaused}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events %v, want %v: the timed-out define ran after all", got, want)
	}
}

// An agent that stops during a job records it as interrupted; one that
// died during it leaves job-started alone in the log, and the next agent's
// Recover records the job as interrupted.
func TestJobInterruptedByAgentRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "stop", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("web", clockUTC)
			e.start(cfg)
			var id string
			if crash {
				// What a dead agent leaves: the job's start, nothing after.
				id = "job-of-a-dead-agent"
				ev := domains.NewEvent(cfg.UUID, t0, "save-9", "host-a", domains.JobStarted{ID: id, Kind: domains.JobMigrate})
				if _, err := e.log.Append(e.ctx, domains.AppendRequest{Domain: cfg.UUID, ExpectedVersion: e.log.Version(cfg.UUID), Events: []domains.Event{ev}}); err != nil {
					t.Fatal(err)
				}
			} else {
				_, j, _ := e.startJob(cfg)
				id = j.ID()
			}
			drv := domainstest.NewFakeDriver()
			drv.SetAttachable(cfg.UUID, domainstest.NewFakeGuest(e.drv.Guest(cfg.UUID).PID(), "kvm"))
			if crash {
				// The dead agent's projection never saw its last event.
				e.svc.Close()
				p, err := e.log.Replay()
				if err != nil {
					t.Fatal(err)
				}
				e.svc = e.newService(drv, p)
			} else {
				e.restart(drv)
			}
			if err := e.svc.Recover(e.ctx); err != nil {
				t.Fatal(err)
			}
			var fails []domains.JobFailed
			for _, ev := range e.eventsAfter(0) {
				if p, ok := ev.Payload.(domains.JobFailed); ok {
					fails = append(fails, p)
				}
			}
			if len(fails) != 1 || fails[0].ID != id || fails[0].Reason != domains.JobInterrupted || fails[0].Error == "" {
				t.Fatalf("job-failed events %+v; want one, interrupted, for %s", fails, id)
			}
			if d := e.get("web"); d.Job != nil || !d.State.Active() {
				t.Fatalf("after restart: state %s job %+v", d.State, d.Job)
			}
		})
	}
}

// Progress goes to OnProgress at a bounded rate; job info always has the
// last report.
func TestJobProgressBounded(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var sent []domains.JobInfo
	e.svc.Close()
	e.svc = owner.NewService(owner.Options{Log: e.log, Driver: e.drv, Time: e.clk, Host: "host-a",
		OnProgress: func(_ uuid.UUID, info domains.JobInfo) {
			mu.Lock()
			sent = append(sent, info)
			mu.Unlock()
		}})
	t.Cleanup(e.svc.Close)
	cfg := e.define("web", clockUTC)
	e.start(cfg)
	b, j, _ := e.startJob(cfg)
	for i := 1; i <= 100; i++ {
		e.clk.Advance(10 * time.Millisecond) // 1 s in all: at most 5 reports
		j.Progress(domains.JobProgress{Phase: "memory", Done: uint64(i) << 20, Total: 100 << 20})
	}
	mu.Lock()
	n := len(sent)
	mu.Unlock()
	if n < 2 || n > 5 {
		t.Fatalf("%d progress reports in 1 s of 100 updates; want 2..5 (one per 250 ms)", n)
	}
	info, _ := e.svc.JobInfo("web")
	if info.Progress.Done != 100<<20 || info.Progress.Rate == 0 {
		t.Fatalf("job info progress %+v; want the last report with a rate", info.Progress)
	}
	b.release <- nil
	e.waitJobEnd(cfg, j.ID())
}
