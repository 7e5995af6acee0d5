package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/domains"
)

// process watches one QEMU process and closes done when it has exited.
// There are two kinds, because only a parent can wait for a child:
//
//   - a child (Start): a goroutine blocks in Wait, which also reaps it and
//     yields the exit status;
//   - a process adopted after an agent restart (Attach): a pidfd, polled
//     for readability, which the kernel signals when the process exits.
//     The status of a non-child cannot be read, so Exit has Code -1.
//
// Both notice an exit at once (no polling interval), including a SIGKILL
// from outside. Kernels without pidfd_open (< 5.3) fall back to kill(pid,
// 0) every 50 ms.
type process struct {
	pid  int
	done chan struct{}
	exit domains.GuestExit // written before done is closed

	signal func(sig syscall.Signal) error
	// onExit runs after the exit and before done closes (so a new QEMU for
	// the same domain cannot start in between), unless quiet was set.
	onExit func()
	quiet  atomic.Bool
	stopCh chan struct{} // Detach: stop watching (attached processes only)
	once   sync.Once
}

// startChild starts cmd and watches it.
func startChild(cmd *exec.Cmd, onExit func()) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, done: make(chan struct{}), onExit: onExit, stopCh: make(chan struct{})}
	// os.Process signals through a pidfd where the kernel has them, so a
	// signal can never hit a recycled pid.
	p.signal = func(sig syscall.Signal) error { return cmd.Process.Signal(sig) }
	go func() {
		err := cmd.Wait()
		p.finish(exitOf(cmd.ProcessState, err))
	}()
	return p, nil
}

// exitOf says how a child ended.
func exitOf(ps *os.ProcessState, err error) domains.GuestExit {
	if ps == nil {
		return domains.GuestExit{Code: -1, Err: fmt.Sprint(err)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		// Code carries the signal number: 9 for a kill.
		return domains.GuestExit{Code: int(ws.Signal()), Signaled: true, Err: ps.String()}
	case ps.ExitCode() != 0:
		return domains.GuestExit{Code: ps.ExitCode(), Err: ps.String()}
	}
	return domains.GuestExit{}
}

// errDetached: an adopted QEMU is no longer watched, so its pid is not
// ours to signal (it may belong to another process by now).
var errDetached = errors.New("no longer attached to this process")

// watchPID watches a process that is not our child. pidfd is owned by the
// watcher from now on; -1 means the kernel has no pidfds.
func watchPID(pid, pidfd int, onExit func()) *process {
	p := &process{pid: pid, done: make(chan struct{}), onExit: onExit, stopCh: make(chan struct{})}
	var mu sync.Mutex // guards pidfd against a signal racing its close
	p.signal = func(sig syscall.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case pidfd == -1: // no pidfds on this kernel
			return unix.Kill(pid, sig)
		case pidfd < 0: // detached or exited: the pid may belong to another process now
			return errDetached
		}
		return unix.PidfdSendSignal(pidfd, sig, nil, 0)
	}
	closeFD := func() {
		mu.Lock()
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		pidfd = -2 // further signals fail with EBADF rather than hit a reused fd
		mu.Unlock()
	}
	go func() {
		defer closeFD()
		for {
			exited := false
			if pidfd >= 0 {
				// A bounded poll, so that stop is noticed; the exit itself
				// wakes poll immediately.
				fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
				n, err := unix.Poll(fds, 100)
				exited = err == nil && n > 0
			} else {
				exited = !alive(pid)
				if !exited {
					time.Sleep(50 * time.Millisecond)
				}
			}
			if exited {
				p.finish(domains.GuestExit{Code: -1, Err: "exited; status unknown (QEMU is not a child of this agent)"})
				return
			}
			select {
			case <-p.stopCh:
				return
			default:
			}
		}
	}()
	return p
}

func (p *process) finish(e domains.GuestExit) {
	p.exit = e
	if p.onExit != nil && !p.quiet.Load() {
		p.onExit()
	}
	close(p.done)
}

// kill sends SIGKILL; a process that is already gone is not an error.
func (p *process) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	err := p.signal(syscall.SIGKILL)
	if err == nil || errors.Is(err, os.ErrProcessDone) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return fmt.Errorf("kill pid %d: %w", p.pid, err)
}

// detach stops the exit hook and, for an adopted process, the watcher. A
// child's Wait goroutine keeps running: it is what reaps QEMU if it exits
// while this process still lives, and it does nothing else.
func (p *process) detach() {
	p.quiet.Store(true)
	p.once.Do(func() { close(p.stopCh) })
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Fields after the command name, which is in parentheses and may hold
	// anything: the first is the state.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}
