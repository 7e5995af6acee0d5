package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/domains"
)

// settleDial bounds asking a found QEMU's monitor for its state. A QEMU
// whose monitor does not answer in that time is still initialising (or
// wedged): its start did not complete either way.
const settleDial = 15 * time.Second

// Settle is for a domain whose log shows no live QEMU: an agent died
// during its start, or its QEMU died while no agent watched. Whatever the
// run directory and /proc still hold for it is resolved, never left:
//
//   - a QEMU of cfg whose start completed (its vCPUs run, so `cont` was
//     answered and every option applied) is returned, attached, for the
//     caller to record;
//   - any other QEMU of cfg (still initialising, in prelaunch, or paused
//     before its first `cont`: half-configured) is killed, as libvirt
//     kills a domain whose start did not complete;
//   - with no QEMU left, the sockets, pid file and RAM file are removed
//     and the error matches domains.ErrNotFound.
//
// QEMUs are found in /proc by their "-pidfile <run dir>/<uuid>/qemu.pid"
// argument, not by the pid file: QEMU writes that file only after it has
// started, and an agent may die in between.
func (d *Driver) Settle(ctx context.Context, cfg domains.Config) (domains.Guest, error) {
	return asGuest(d.SettleGuest(ctx, cfg))
}

// SettleGuest is Settle returning the concrete type.
func (d *Driver) SettleGuest(ctx context.Context, cfg domains.Config) (*Guest, error) {
	p := d.Paths(cfg.UUID)
	log := d.log.With().Str("domain", cfg.UUID.String()).Logger()
	if !anyRuntimeFile(p) {
		// Start creates the RAM file before it spawns QEMU, and only
		// QEMU's exit or a clean-up removes it: with none of these files,
		// no QEMU of ours can be alive, and /proc need not be read.
		return nil, noneLeft(cfg.UUID)
	}
	pids, err := scanQEMUs(p, cfg.UUID)
	if err != nil {
		return nil, err
	}
	var adopted *Guest
	var errs []error
	for _, pid := range pids {
		pidfd, err := unix.PidfdOpen(pid, 0)
		switch {
		case errors.Is(err, unix.ESRCH):
			continue // gone meanwhile
		case errors.Is(err, unix.ENOSYS):
			pidfd = -1
		case err != nil:
			errs = append(errs, fmt.Errorf("qemu: pidfd_open %d: %w", pid, err))
			continue
		}
		// The pidfd pins the process: check it is still the one we found.
		if ok, err := hasArgs(pid, "-pidfile", p.PID); err != nil || !ok {
			closeFD(pidfd)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		status := "not asked"
		if adopted == nil {
			var g *Guest
			if g, status = d.adoptRunning(ctx, p, cfg.UUID, pid, pidfd); g != nil {
				adopted = g
				log.Warn().Int("pid", pid).Msg("qemu completed its start but the log does not record it: adopting it")
				continue
			}
		}
		if err := killPID(ctx, pid, pidfd); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Warn().Int("pid", pid).Str("status", status).Msg("killed a qemu whose start did not complete")
	}
	if err := errors.Join(errs...); err != nil {
		return adopted, fmt.Errorf("qemu: settle %s: %w", cfg.UUID, err)
	}
	if adopted != nil {
		return adopted, nil
	}
	removeRuntimeFiles(d.log, p)
	return nil, noneLeft(cfg.UUID)
}

// adoptRunning attaches to the QEMU at pid if its vCPUs run. Otherwise it
// leaves the pidfd to the caller and returns nil and the status it saw.
func (d *Driver) adoptRunning(ctx context.Context, p Paths, id uuid.UUID, pid, pidfd int) (*Guest, string) {
	qctx, cancel := context.WithTimeout(ctx, settleDial)
	defer cancel()
	mon, accel, err := connectPID(qctx, p, id, pid)
	if err != nil {
		return nil, "monitor not answering"
	}
	st, err := mon.QueryStatus(qctx)
	if err != nil || st.Status != "running" {
		mon.Close()
		if err != nil {
			return nil, "query-status failed"
		}
		return nil, st.Status
	}
	return d.adopt(p, id, pid, pidfd, mon, accel), st.Status
}

// killPID SIGKILLs a QEMU that is not our child and waits for its exit.
func killPID(ctx context.Context, pid, pidfd int) error {
	proc := watchPID(pid, pidfd, nil)
	defer proc.detach()
	if err := proc.kill(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	select {
	case <-proc.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: kill pid %d: waiting for exit: %w", pid, ctx.Err())
	case <-time.After(killTimeout):
		return fmt.Errorf("qemu: pid %d did not exit within %s of SIGKILL", pid, killTimeout)
	}
}

// scanQEMUs lists the processes whose command line names p's pid file
// (and the domain's UUID). Processes that vanish or hide are skipped.
func scanQEMUs(p Paths, id uuid.UUID) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("qemu: scan /proc: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		ok, _ := hasArgs(pid, "-pidfile", p.PID, "-uuid", id.String())
		if ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// hasArgs reports whether /proc/<pid>/cmdline holds each (flag, value)
// pair of kv as two consecutive arguments. A zombie has an empty command
// line and a process that is gone has none: neither matches.
func hasArgs(pid int, kv ...string) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read /proc/%d/cmdline: %w", pid, err)
	}
	args := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0})
	for k := 0; k+1 < len(kv); k += 2 {
		found := false
		for i := 0; i+1 < len(args) && !found; i++ {
			found = string(args[i]) == kv[k] && string(args[i+1]) == kv[k+1]
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

func anyRuntimeFile(p Paths) bool {
	for _, f := range runtimeFiles(p) {
		if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

func noneLeft(id uuid.UUID) error {
	return domains.Errorf(domains.CodeNotFound, "qemu: domain %s: no QEMU left", id)
}
