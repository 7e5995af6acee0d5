package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/domains"
)

// A pid file that cannot be read is not "no QEMU": a start must then touch
// nothing rather than replace a possibly live guest's files.
func TestFindQEMUUnreadablePidFile(t *testing.T) {
	dir := t.TempDir()
	p := PathsFor(dir, uuid.New())
	if err := os.MkdirAll(p.PID, 0o700); err != nil { // reading a directory fails with EISDIR
		t.Fatal(err)
	}
	_, _, err := findQEMU(p, uuid.New())
	if err == nil || errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("unreadable pid file: %v, want an error that is not not-found", err)
	}
	_, _, err = findQEMU(PathsFor(filepath.Join(dir, "none"), uuid.New()), uuid.New())
	if !errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("missing pid file: %v, want not-found", err)
	}
}

// After detach, kill must not signal: the pid may be someone else's.
func TestKillAfterDetachSignalsNothing(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		pidfd = -1
	}
	p := watchPID(cmd.Process.Pid, pidfd, nil)
	p.detach()
	time.Sleep(300 * time.Millisecond) // let the watcher close its pidfd
	if err := p.kill(); err == nil {
		t.Fatal("kill after detach reported success")
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Fatalf("the detached process was signalled: %v", err)
	}
}

// '=' in the run directory would break -qmp's option parsing.
func TestRunDirWithEquals(t *testing.T) {
	requireQEMU(t)
	dir := filepath.Join(t.TempDir(), "a=b")
	if _, err := New(Options{RunDir: dir, Accel: AccelTCG, Log: zerolog.Nop()}); err == nil {
		t.Fatal("a run dir with '=' was accepted")
	}
}
