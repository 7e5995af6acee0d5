package owner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// on_crash (libvirt's <on_crash>). With destroy, QEMU ends by itself on a
// panic (-action panic=shutdown) and the watcher records stopped
// (crashed). Every other policy has QEMU stay in guest-panicked, RAM
// intact (-action panic=pause); once the watcher has recorded crashed,
// crashPolicy acts: a dump job first for coredump-*, then QEMU is ended
// (recorded stopped (crashed), "guest panicked"), then restart starts the
// domain again. preserve leaves it crashed for the user to inspect, dump
// (dump-started is legal from crashed) and destroy.

// crashTimeout bounds the whole policy: dump, stop and restart.
const crashTimeout = 10 * time.Minute

// crashDumpFormat is what on_crash dumps are written in: readable by
// crash, makedumpfile and libkdumpfile alike.
const crashDumpFormat = domains.DumpKdumpZlib

func (s *Service) crashPolicy(h *guestHandle, cfg domains.Config) {
	action := cfg.CrashAction()
	if action == domains.CrashDestroy || action == domains.CrashPreserve {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), crashTimeout)
	defer cancel()
	ref := cfg.UUID.String()
	if action == domains.CrashCoredumpDestroy || action == domains.CrashCoredumpRestart {
		_ = s.crashDump(ctx, ref, cfg) // a failed dump is on record (dump-failed); the policy goes on
	}
	if s.guest(h.id) != h {
		return // destroyed or restarted meanwhile
	}
	select {
	case <-s.closed:
		// The agent is stopping: guests outlive it, and the next agent
		// finds this one in guest-panicked.
		return
	default:
	}
	_ = h.guest.Kill(ctx)
	select {
	case <-h.guest.Done():
	case <-ctx.Done():
		return
	case <-s.closed:
		return
	}
	// The watcher records stopped (crashed); restart waits for it.
	if action != domains.CrashRestart && action != domains.CrashCoredumpRestart {
		return
	}
	for {
		if d, err := s.Get(ref); err == nil && d.State == domains.StateShutoff {
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		}
	}
	_, _ = s.Start(ctx, "", ref, domains.StartOptions{})
}

// crashDump writes an on_crash dump into the agent's dump directory and
// waits for it to end.
func (s *Service) crashDump(ctx context.Context, ref string, cfg domains.Config) error {
	if s.dumpDir == "" {
		return fmt.Errorf("on_crash: no dump directory")
	}
	if err := os.MkdirAll(s.dumpDir, 0o700); err != nil {
		return fmt.Errorf("on_crash: %w", err)
	}
	name := fmt.Sprintf("%s-%s.kdump", cfg.Name, s.clock.Now().UTC().Format("20060102T150405.000Z"))
	o := domains.DumpOptions{Path: filepath.Join(s.dumpDir, name), Format: crashDumpFormat}
	ended := make(chan error, 1)
	_, err := s.RunAsync(ctx, "", ref, domains.JobDump, o, func(ctx context.Context, j *Job) error {
		err := s.runDump(ctx, j, o.Path, o)
		ended <- err
		return err
	})
	if err != nil {
		return err
	}
	select {
	case err := <-ended:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
