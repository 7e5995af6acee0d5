package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

const (
	// DefaultStartTimeout bounds Start when ctx has no deadline. SeaBIOS
	// is not involved (QEMU starts paused), so this only covers QEMU's own
	// initialisation, which is well under a second on an idle host.
	DefaultStartTimeout = 30 * time.Second

	// killTimeout bounds waiting for a SIGKILLed QEMU to go away in undo.
	killTimeout = 10 * time.Second

	// logTailBytes is how much of qemu.log a start error carries.
	logTailBytes = 2048

	dialRetry = 10 * time.Millisecond

	// logHeader starts the line vmledger writes to qemu.log before QEMU's.
	logHeader = "vmledger: "
)

// Start launches QEMU for spec: paused (-S), checked, then running unless
// spec.Paused. ctx bounds only the start; QEMU's lifetime is its own, and
// it outlives the agent. On failure nothing is left running and the error
// carries the end of QEMU's log (its own error message, usually).
func (d *Driver) Start(ctx context.Context, spec domains.StartSpec) (domains.Guest, error) {
	return asGuest(d.StartGuest(ctx, spec))
}

// StartGuest is Start returning the concrete type.
func (d *Driver) StartGuest(ctx context.Context, spec domains.StartSpec) (*Guest, error) {
	return d.start(ctx, spec, false)
}

// StartIncoming starts QEMU for spec waiting for a migration stream
// (-incoming defer, status "inmigrate") on a fresh all-zero RAM file, as a
// restore needs: zero pages are not in the stream. Feed it with StreamIn;
// it stays paused after that whatever spec.Paused says, so that the caller
// resumes it only once the stream was accepted.
func (d *Driver) StartIncoming(ctx context.Context, spec domains.StartSpec) (*Guest, error) {
	return d.start(ctx, spec, true)
}

func (d *Driver) start(ctx context.Context, spec domains.StartSpec, incoming bool) (*Guest, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	if err := d.checkDisks(spec.Config); err != nil {
		return nil, err
	}
	id := spec.Config.UUID
	l := &launch{d: d, spec: spec, paths: d.Paths(id), incoming: incoming}
	log := d.log.With().Str("domain", id.String()).Str("name", spec.Config.Name).Logger()
	t0 := time.Now()
	if err := runSteps(ctx, log, l.steps()); err != nil {
		msg := fmt.Sprintf("qemu: start %s", spec.Config.Name)
		if tail := logTail(l.paths.Log, logTailBytes); tail != "" && l.spawned {
			return nil, fmt.Errorf("%s: %w; qemu.log: %s", msg, err, tail)
		}
		return nil, fmt.Errorf("%s: %w", msg, err)
	}
	g := newGuest(d.log, id, l.paths, d.accel, l.proc, l.mon)
	g.drv = d
	g.log.Info().Str("accel", d.accel).Bool("paused", spec.Paused).
		Dur("took_ms", time.Since(t0)).Msg("qemu started")
	return g, nil
}

// launch is the state shared by the start steps.
type launch struct {
	d       *Driver
	spec    domains.StartSpec
	paths   Paths
	args    []string
	proc    *process
	mon     *qmp.Client
	spawned bool
	// incoming: -incoming defer, never cont (see StartIncoming).
	incoming bool
}

func (l *launch) steps() []step {
	return []step{
		{name: "command line", do: l.commandLine},
		{name: "run directory", do: l.runDir, undo: l.removeSockets},
		{name: "ram file", do: l.ramFile, undo: func() { os.Remove(l.paths.RAM) }},
		{name: "spawn", do: l.spawn, undo: l.killQEMU},
		{name: "connect qmp", do: l.connect, undo: func() { l.mon.Close() }},
		{name: "check status", do: l.checkStatus},
		{name: "cont", do: l.cont},
	}
}

func (l *launch) commandLine(context.Context) error {
	var err error
	l.args, err = CommandLine(l.spec, l.paths, l.d.accel, time.Now())
	if l.incoming {
		l.args = append(l.args, "-incoming", "defer")
	}
	return err
}

// runDir makes <RunDir>/<uuid> (0700: it holds guest RAM and a monitor
// socket that gives full control of the guest) and clears what a previous
// QEMU may have left. A QEMU of this domain that is still running is a
// conflict: starting a second one on the same disks would corrupt them.
func (l *launch) runDir(context.Context) error {
	if err := os.Mkdir(l.paths.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Chmod(l.paths.Dir, 0o700); err != nil {
		return err
	}
	if err := l.d.user.give(l.paths.Dir); err != nil {
		return err
	}
	switch pid, pidfd, err := findQEMU(l.paths, l.spec.Config.UUID); {
	case err == nil:
		closeFD(pidfd)
		return domains.Errorf(domains.CodeConflict, "domain %s already has a running QEMU (pid %d)", l.spec.Config.UUID, pid)
	case !errors.Is(err, domains.ErrNotFound):
		return err // cannot tell whether one runs: touch nothing
	}
	l.removeSockets()
	// Keep one previous log for post-mortems, and start this one empty
	// so the error tail is this start's.
	if err := os.Rename(l.paths.Log, l.paths.Log+".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (l *launch) removeSockets() {
	for _, f := range []string{l.paths.QMP, l.paths.Serial, l.paths.PID} {
		os.Remove(f)
	}
}

// ramFile creates a fresh, all-zero RAM file. Never reuse one: an incoming
// migration or restore does not send zero pages, so any stale byte left in
// the file would show through as guest memory corruption. Remove, create
// exclusively and truncate gives a sparse file of zeros (and a new inode,
// so a QEMU still mapping the old one is unaffected).
func (l *launch) ramFile(context.Context) error {
	if err := os.Remove(l.paths.RAM); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(l.paths.RAM, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(l.spec.Config.MemoryMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.d.user.give(l.paths.RAM)
	}
	if err != nil {
		os.Remove(l.paths.RAM)
		return err
	}
	// DIMMs the same way (hotplug.go), and no stale ones from before.
	for _, f := range deviceFiles(l.paths) {
		os.Remove(f)
	}
	for _, m := range l.spec.Config.DIMMs {
		if err := createMemFile(dimmFile(l.paths, m.ID), m.SizeMiB, l.d.user); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts QEMU in its own session with its output in qemu.log: no
// pipe to the agent (whose death would SIGPIPE QEMU), no controlling
// terminal, no signal from the agent's process group. Deliberately not
// exec.CommandContext: ctx ends with Start, QEMU does not.
func (l *launch) spawn(context.Context) error {
	logf, err := os.OpenFile(l.paths.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // QEMU has its own copy
	fmt.Fprintf(logf, "%s%s %s %s\n", logHeader, time.Now().UTC().Format(time.RFC3339), l.d.binary, strings.Join(l.args, " "))
	cmd := exec.Command(l.d.binary, l.args...)
	cmd.Dir = l.paths.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: l.d.user.credential()}
	cmd.Env = qemuEnv(os.Environ())
	log := l.d.log
	paths := l.paths
	l.proc, err = startChild(cmd, func() { removeRuntimeFiles(log, paths) })
	if err != nil {
		return err
	}
	l.spawned = true
	return nil
}

func (l *launch) killQEMU() {
	l.proc.kill()
	select {
	case <-l.proc.done:
	case <-time.After(killTimeout):
		l.d.log.Error().Int("pid", l.proc.pid).Msg("qemu did not exit after SIGKILL")
	}
}

// connect waits for QEMU's QMP socket and does the handshake. QEMU creates
// the socket early in its start-up, so this retries until it answers,
// QEMU exits (a bad option, say) or ctx ends.
func (l *launch) connect(ctx context.Context) error {
	for {
		mon, err := qmp.Dial(ctx, "unix", l.paths.QMP)
		if err == nil {
			l.mon = mon
			return nil
		}
		select {
		case <-l.proc.done:
			return fmt.Errorf("qemu exited (%s) before its monitor answered", describeExit(l.proc.exit))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the monitor: %w (last: %w)", ctx.Err(), err)
		case <-time.After(dialRetry):
		}
	}
}

// checkStatus makes sure QEMU is where -S leaves it before letting the
// guest run: a QEMU that already runs is not one we configured.
func (l *launch) checkStatus(ctx context.Context) error {
	st, err := l.mon.QueryStatus(ctx)
	if err != nil {
		return err
	}
	want := "prelaunch"
	if l.incoming {
		want = "inmigrate"
	}
	if st.Status != want && st.Status != "paused" {
		return fmt.Errorf("status %q, want %s or paused", st.Status, want)
	}
	return nil
}

func (l *launch) cont(ctx context.Context) error {
	if l.spec.Paused || l.incoming {
		return nil
	}
	return l.mon.Cont(ctx)
}

func describeExit(e domains.GuestExit) string {
	if e.Err != "" {
		return e.Err
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// logTail returns the last n bytes of the file at path, on one line.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		// Our own header (the whole command line) would crowd out QEMU's
		// message, and the caller has the command line anyway.
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, logHeader) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, " | ")
}
