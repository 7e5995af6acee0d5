package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Guest is one running QEMU, started by Start or found by Attach.
type Guest struct {
	id    uuid.UUID
	paths Paths
	accel string
	log   zerolog.Logger
	proc  *process
	mon   *qmp.Client

	events   chan domains.GuestEvent
	stop     chan struct{} // closed by Detach
	pumpDone chan struct{}
	detach   sync.Once
	fdSeq    atomic.Uint64 // names of descriptors passed to QEMU
	drv      *Driver       // its protected-file checks, for hot-plugged disks
}

var _ domains.Guest = (*Guest)(nil)

func newGuest(log zerolog.Logger, id uuid.UUID, p Paths, accel string, proc *process, mon *qmp.Client) *Guest {
	g := &Guest{
		id: id, paths: p, accel: accel, proc: proc, mon: mon,
		log:      log.With().Str("domain", id.String()).Int("pid", proc.pid).Logger(),
		events:   make(chan domains.GuestEvent, eventBuffer),
		stop:     make(chan struct{}),
		pumpDone: make(chan struct{}),
	}
	go func() {
		defer close(g.pumpDone)
		pumpEvents(g.log, mon.Events(), g.events, g.stop)
	}()
	return g
}

// PID is QEMU's process id.
func (g *Guest) PID() int { return g.proc.pid }

// Accel is "kvm" or "tcg".
func (g *Guest) Accel() string { return g.accel }

// UUID is the domain's UUID.
func (g *Guest) UUID() uuid.UUID { return g.id }

// Paths are the guest's files.
func (g *Guest) Paths() Paths { return g.paths }

// Console is the path of the serial console socket (see OpenConsole).
func (g *Guest) Console() string { return g.paths.Serial }

// Monitor is the guest's QMP client, for commands this package does not
// wrap. It is closed by Detach.
func (g *Guest) Monitor() *qmp.Client { return g.mon }

// Status reads QEMU's run state and the guest's RTC. The RTC is the wall
// time the guest sees, returned as if it were UTC (with base=localtime it
// is local time): the caller knows the base and compares like with like.
func (g *Guest) Status(ctx context.Context) (domains.GuestStatus, error) {
	st, err := g.mon.QueryStatus(ctx)
	if err != nil {
		return domains.GuestStatus{}, fmt.Errorf("qemu: status: %w", err)
	}
	rtc, err := g.mon.RTCTime(ctx)
	if err != nil {
		return domains.GuestStatus{}, fmt.Errorf("qemu: status: %w", err)
	}
	return domains.GuestStatus{Running: st.Running, Status: st.Status, RTC: rtc}, nil
}

// Pause stops the vCPUs (QMP stop; QEMU emits STOP).
func (g *Guest) Pause(ctx context.Context) error { return wrap("pause", g.mon.Stop(ctx)) }

// Resume lets the vCPUs run (QMP cont; QEMU emits RESUME).
func (g *Guest) Resume(ctx context.Context) error { return wrap("resume", g.mon.Cont(ctx)) }

// Reset is a hard reset (QMP system_reset; QEMU emits RESET).
func (g *Guest) Reset(ctx context.Context) error { return wrap("reset", g.mon.SystemReset(ctx)) }

// Powerdown presses the ACPI power button; the guest decides what to do.
func (g *Guest) Powerdown(ctx context.Context) error {
	return wrap("powerdown", g.mon.SystemPowerdown(ctx))
}

// Kill sends SIGKILL to QEMU and waits, under ctx, until it has exited.
// SIGKILL rather than QMP quit: destroy must work when QEMU is wedged, and
// the guest's disks see the same thing either way (a power cut).
func (g *Guest) Kill(ctx context.Context) error {
	if err := g.proc.kill(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	select {
	case <-g.proc.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: kill pid %d: waiting for exit: %w", g.proc.pid, ctx.Err())
	}
}

// Events are QMP hints, closed when the monitor goes away (QEMU exited or
// Detach). The consumer should drain it: a pending event holds a goroutine
// until it is taken or Detach is called.
func (g *Guest) Events() <-chan domains.GuestEvent { return g.events }

// Done is closed when QEMU has exited.
func (g *Guest) Done() <-chan struct{} { return g.proc.done }

// Exit says how QEMU ended; zero until Done is closed. Code is the exit
// status, or the signal number when Signaled; -1 when unknown (a QEMU
// re-attached after an agent restart is not our child, and only a parent
// can read its status).
func (g *Guest) Exit() domains.GuestExit {
	select {
	case <-g.proc.done:
		return g.proc.exit
	default:
		return domains.GuestExit{}
	}
}

// Detach closes the monitor and stops watching, leaving QEMU running for a
// later Attach. Events closes; Done will not close any more (except that a
// child that exits while this process lives is still reaped). Idempotent.
func (g *Guest) Detach() error {
	g.detach.Do(func() {
		g.proc.detach()
		close(g.stop)
		g.mon.Close()
		<-g.pumpDone
		g.log.Info().Msg("detached from qemu")
	})
	return nil
}

func wrap(op string, err error) error {
	if err != nil {
		return fmt.Errorf("qemu: %s: %w", op, err)
	}
	return nil
}

// removeRuntimeFiles deletes what only a live QEMU needs: its sockets, its
// pid file and the guest RAM (which can be gigabytes on a tmpfs). The log
// stays for post-mortems. Called once QEMU has exited.
func removeRuntimeFiles(log zerolog.Logger, p Paths) {
	for _, f := range runtimeFiles(p) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn().Err(err).Str("file", f).Msg("cannot remove qemu runtime file")
		}
	}
}

// runtimeFiles are what only a live QEMU needs (see removeRuntimeFiles).
func runtimeFiles(p Paths) []string {
	return append([]string{p.QMP, p.Serial, p.PID, p.RAM}, deviceFiles(p)...)
}

// asGuest returns g as a domains.Guest: nil, not a typed nil in an
// interface, when there is none.
func asGuest(g *Guest, err error) (domains.Guest, error) {
	if g == nil {
		return nil, err
	}
	return g, err
}
