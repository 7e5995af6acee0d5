package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Attach reconnects to the QEMU of cfg that kept running while the agent
// was away. The pid file alone proves nothing (the pid may have been
// reused since), so the process must also carry "-uuid <uuid>" on its
// command line. Without such a process the error matches
// domains.ErrNotFound.
func (d *Driver) Attach(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	return asGuest(d.AttachGuest(ctx, cfg))
}

// AttachGuest is Attach returning the concrete type.
func (d *Driver) AttachGuest(ctx context.Context, cfg domains.Config) (*Guest, error) {
	p := d.Paths(cfg.UUID)
	pid, pidfd, err := findQEMU(p, cfg.UUID)
	if err != nil {
		return nil, err
	}
	// From here on the pidfd pins the process identity: whatever happens
	// to the pid, signals and exit notification concern this QEMU.
	mon, accel, err := connectPID(ctx, p, cfg.UUID, pid)
	if err != nil {
		closeFD(pidfd)
		return nil, err
	}
	// A reboot the last agent left pending dies with it: QEMU exits on
	// power-off again (virsh.go).
	if err := setShutdownAction(ctx, mon, false); err != nil {
		d.log.Warn().Err(err).Str("domain", cfg.UUID.String()).Msg("cannot reset qemu's shutdown action")
	}
	return d.adopt(p, cfg.UUID, pid, pidfd, mon, accel), nil
}

// connectPID opens the monitor of the QEMU at pid and asks its accelerator.
func connectPID(ctx context.Context, p Paths, id uuid.UUID, pid int) (*qmp.Client, string, error) {
	mon, err := qmp.Dial(ctx, "unix", p.QMP)
	if err != nil {
		return nil, "", domains.Errorf(domains.CodeUnavailable, "qemu: attach %s (pid %d): monitor: %w", id, pid, err)
	}
	accel, err := queryAccel(ctx, mon)
	if err != nil {
		mon.Close()
		return nil, "", fmt.Errorf("qemu: attach %s: %w", id, err)
	}
	return mon, accel, nil
}

// adopt watches a QEMU that is not our child; pidfd is the watcher's now.
func (d *Driver) adopt(p Paths, id uuid.UUID, pid, pidfd int, mon *qmp.Client, accel string) *Guest {
	log := d.log
	proc := watchPID(pid, pidfd, func() { removeRuntimeFiles(log, p) })
	g := newGuest(d.log, id, p, accel, proc, mon)
	g.drv = d
	g.log.Info().Str("accel", accel).Msg("attached to running qemu")
	return g
}

// findQEMU returns the pid of the live QEMU of domain id and a pidfd for
// it (-1 where the kernel has none; the caller owns it), or an error
// matching domains.ErrNotFound.
func findQEMU(p Paths, id uuid.UUID) (pid, pidfd int, err error) {
	notFound := func(format string, a ...any) (int, int, error) {
		return 0, -1, domains.Errorf(domains.CodeNotFound, "qemu: domain %s: no running QEMU: "+format, append([]any{id}, a...)...)
	}
	b, err := os.ReadFile(p.PID)
	if errors.Is(err, fs.ErrNotExist) {
		return notFound("no pid file %s", p.PID)
	}
	if err != nil {
		// EMFILE, EACCES...: we cannot tell, and "not found" would let a
		// start replace a live guest's sockets and RAM file.
		return 0, -1, fmt.Errorf("qemu: domain %s: read pid file: %w", id, err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return notFound("pid file %s holds %q", p.PID, b)
	}
	// Open the pidfd before checking the command line, so the check and
	// everything after it concern the same process even if the pid is
	// recycled in between.
	pidfd, err = unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return notFound("pid %d has exited", pid)
	case errors.Is(err, unix.ENOSYS):
		pidfd = -1
	case err != nil:
		return 0, -1, fmt.Errorf("qemu: pidfd_open %d: %w", pid, err)
	}
	ours, err := isOurQEMU(pid, id)
	if err != nil {
		closeFD(pidfd)
		return 0, -1, fmt.Errorf("qemu: domain %s: %w", id, err)
	}
	if !ours {
		closeFD(pidfd)
		return notFound("pid %d is not its QEMU (or has exited)", pid)
	}
	return pid, pidfd, nil
}

// isOurQEMU checks /proc/<pid>/cmdline for "-uuid <id>" (see hasArgs).
func isOurQEMU(pid int, id uuid.UUID) (bool, error) { return hasArgs(pid, "-uuid", id.String()) }

// queryAccel asks QEMU which accelerator it runs with; an attached QEMU
// may predate the driver's current choice.
func queryAccel(ctx context.Context, mon *qmp.Client) (string, error) {
	var kvm struct {
		Enabled bool `json:"enabled"`
	}
	if err := mon.Execute(ctx, "query-kvm", nil, &kvm); err != nil {
		return "", err
	}
	if kvm.Enabled {
		return AccelKVM, nil
	}
	return AccelTCG, nil
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
