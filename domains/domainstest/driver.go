package domainstest

import (
	"context"
	"errors"
	"sync"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// FakeDriver is a scriptable domains.Driver. Start returns a new running
// FakeGuest (or StartErr); Attach returns the guest registered with
// SetAttachable, else an error matching domains.ErrNotFound. Every call is
// recorded.
type FakeDriver struct {
	mu         sync.Mutex
	accel      string
	nextPID    int
	startErr   error
	attachErr  error
	starts     []domains.StartSpec
	attaches   []domains.Config
	guests     map[uuid.UUID]*FakeGuest
	attachable map[uuid.UUID]*FakeGuest
	onStart    func(domains.StartSpec, *FakeGuest)
}

var _ domains.Driver = (*FakeDriver)(nil)

// NewFakeDriver returns a driver whose guests report accel "kvm" and PIDs
// from 1000 up.
func NewFakeDriver() *FakeDriver {
	return &FakeDriver{
		accel: "kvm", nextPID: 1000,
		guests: map[uuid.UUID]*FakeGuest{}, attachable: map[uuid.UUID]*FakeGuest{},
	}
}

// FailStart makes every following Start fail with err until FailStart(nil).
func (d *FakeDriver) FailStart(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.startErr = err
}

// FailAttach makes every following Attach fail with err until FailAttach(nil).
func (d *FakeDriver) FailAttach(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attachErr = err
}

// OnStart installs fn, called with each new guest before Start returns it
// (to script its status or queue hints).
func (d *FakeDriver) OnStart(fn func(domains.StartSpec, *FakeGuest)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onStart = fn
}

// SetAttachable makes Attach for domain id return g (nil: not found).
func (d *FakeDriver) SetAttachable(id uuid.UUID, g *FakeGuest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g == nil {
		delete(d.attachable, id)
		return
	}
	d.attachable[id] = g
}

// Start implements domains.Driver.
func (d *FakeDriver) Start(ctx context.Context, spec domains.StartSpec) (domains.Guest, error) {
	d.mu.Lock()
	d.starts = append(d.starts, cloneSpec(spec))
	if err := d.startErr; err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	d.nextPID++
	g := NewFakeGuest(d.nextPID, d.accel)
	if spec.Paused {
		g.SetStatus(domains.GuestStatus{Running: false, Status: "paused"})
	}
	d.guests[spec.Config.UUID] = g
	hook := d.onStart
	d.mu.Unlock()
	if hook != nil {
		hook(spec, g)
	}
	return g, nil
}

// Attach implements domains.Driver.
func (d *FakeDriver) Attach(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attaches = append(d.attaches, cfg.Clone())
	if d.attachErr != nil {
		return nil, d.attachErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, ok := d.attachable[cfg.UUID]
	if !ok {
		return nil, domains.Errorf(domains.CodeNotFound, "fake driver: no QEMU for domain %s", cfg.UUID)
	}
	delete(d.attachable, cfg.UUID)
	d.guests[cfg.UUID] = g
	return g, nil
}

// Starts returns the specs Start was called with, in order.
func (d *FakeDriver) Starts() []domains.StartSpec {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]domains.StartSpec, len(d.starts))
	for i, s := range d.starts {
		out[i] = cloneSpec(s)
	}
	return out
}

// Attaches returns the configs Attach was called with, in order.
func (d *FakeDriver) Attaches() []domains.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]domains.Config, len(d.attaches))
	for i, c := range d.attaches {
		out[i] = c.Clone()
	}
	return out
}

// Guest returns the last guest started or attached for domain id.
func (d *FakeDriver) Guest(id uuid.UUID) *FakeGuest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.guests[id]
}

func cloneSpec(s domains.StartSpec) domains.StartSpec {
	s.Config = s.Config.Clone()
	return s
}

// ErrKilled is the Exit().Err of a guest ended by Kill.
const ErrKilled = "killed"

// FakeGuest is a scriptable domains.Guest. Pause, Resume and Kill change
// its status as QEMU would; hints are pushed with Push; Terminate makes
// QEMU exit. Every method call is recorded by name.
type FakeGuest struct {
	pid   int
	accel string

	mu       sync.Mutex
	status   domains.GuestStatus
	calls    []string
	fail     map[string]error
	exit     domains.GuestExit
	detached bool
	periph   []string // device ids (devices.go)

	evMu     sync.Mutex // guards sending on and closing events
	events   chan domains.GuestEvent
	evClosed bool

	doneOnce sync.Once
	done     chan struct{}
}

var _ domains.Guest = (*FakeGuest)(nil)

// NewFakeGuest returns a running guest.
func NewFakeGuest(pid int, accel string) *FakeGuest {
	return &FakeGuest{
		pid: pid, accel: accel,
		status: domains.GuestStatus{Running: true, Status: "running"},
		fail:   map[string]error{},
		events: make(chan domains.GuestEvent, 256),
		done:   make(chan struct{}),
	}
}

// Fail makes method ("Pause", "Resume", "Reset", "Powerdown", "Kill",
// "Status", "Detach") fail with err from now on; nil clears it.
func (g *FakeGuest) Fail(method string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		delete(g.fail, method)
		return
	}
	g.fail[method] = err
}

// SetStatus sets what Status returns.
func (g *FakeGuest) SetStatus(st domains.GuestStatus) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status = st
}

// Calls returns the names of the methods called so far, in order (PID,
// Accel, Events, Done and Exit are not recorded).
func (g *FakeGuest) Calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.calls...)
}

// CallCount is how many times method was called.
func (g *FakeGuest) CallCount(method string) int {
	n := 0
	for _, c := range g.Calls() {
		if c == method {
			n++
		}
	}
	return n
}

// Push queues a QMP hint. It reports false when the monitor is gone
// (after Terminate, Kill or Detach) and the hint was dropped.
func (g *FakeGuest) Push(ev domains.GuestEvent) bool {
	g.evMu.Lock()
	defer g.evMu.Unlock()
	if g.evClosed {
		return false
	}
	g.events <- ev
	return true
}

// Terminate simulates QEMU exiting with x: the monitor closes (hints
// already pushed stay readable), then Done is closed. Later calls are
// no-ops.
func (g *FakeGuest) Terminate(x domains.GuestExit) {
	g.mu.Lock()
	select {
	case <-g.done:
		g.mu.Unlock()
		return
	default:
	}
	g.exit = x
	g.status = domains.GuestStatus{Running: false, Status: "exited"}
	g.mu.Unlock()
	g.closeEvents()
	g.doneOnce.Do(func() { close(g.done) })
}

// Exited reports whether QEMU has exited.
func (g *FakeGuest) Exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Detached reports whether Detach was called.
func (g *FakeGuest) Detached() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.detached
}

func (g *FakeGuest) closeEvents() {
	g.evMu.Lock()
	defer g.evMu.Unlock()
	if !g.evClosed {
		g.evClosed = true
		close(g.events)
	}
}

// call records method and returns its scripted error.
func (g *FakeGuest) call(method string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, method)
	return g.fail[method]
}

func (g *FakeGuest) PID() int      { return g.pid }
func (g *FakeGuest) Accel() string { return g.accel }

// Status implements domains.Guest.
func (g *FakeGuest) Status(ctx context.Context) (domains.GuestStatus, error) {
	if err := g.call("Status"); err != nil {
		return domains.GuestStatus{}, err
	}
	if err := ctx.Err(); err != nil {
		return domains.GuestStatus{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.status, nil
}

// Pause implements domains.Guest: the status becomes paused.
func (g *FakeGuest) Pause(ctx context.Context) error {
	return g.change("Pause", domains.GuestStatus{Running: false, Status: "paused"})
}

// Resume implements domains.Guest: the status becomes running.
func (g *FakeGuest) Resume(ctx context.Context) error {
	return g.change("Resume", domains.GuestStatus{Running: true, Status: "running"})
}

func (g *FakeGuest) change(method string, st domains.GuestStatus) error {
	if err := g.call(method); err != nil {
		return err
	}
	if g.Exited() {
		return errors.New("fake guest: QEMU has exited")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st.RTC = g.status.RTC
	g.status = st
	return nil
}

// Reset implements domains.Guest (recorded only).
func (g *FakeGuest) Reset(ctx context.Context) error { return g.call("Reset") }

// Powerdown implements domains.Guest (recorded only: the test decides
// whether and how the guest shuts down).
func (g *FakeGuest) Powerdown(ctx context.Context) error { return g.call("Powerdown") }

// Kill implements domains.Guest: QEMU exits at once, signaled.
func (g *FakeGuest) Kill(ctx context.Context) error {
	if err := g.call("Kill"); err != nil {
		return err
	}
	g.Terminate(domains.GuestExit{Code: -1, Signaled: true, Err: ErrKilled})
	return nil
}

// Events implements domains.Guest.
func (g *FakeGuest) Events() <-chan domains.GuestEvent { return g.events }

// Done implements domains.Guest.
func (g *FakeGuest) Done() <-chan struct{} { return g.done }

// Exit implements domains.Guest.
func (g *FakeGuest) Exit() domains.GuestExit {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exit
}

// Detach implements domains.Guest: the monitor closes, QEMU keeps running.
func (g *FakeGuest) Detach() error {
	if err := g.call("Detach"); err != nil {
		return err
	}
	g.mu.Lock()
	g.detached = true
	g.mu.Unlock()
	g.closeEvents()
	return nil
}

// DropMonitor simulates a lost QMP connection while QEMU keeps running:
// Events closes, Done does not.
func (g *FakeGuest) DropMonitor() { g.closeEvents() }
