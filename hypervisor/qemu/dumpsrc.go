package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// The memory access a core dump needs (domains/owner/dump.go declares it):
// the RAM file and QEMU's own dump-guest-memory. The registers are
// CPUStates (registers.go).

// RAMFile is the guest's memory-backend-file: guest RAM, low part first.
func (g *Guest) RAMFile() string { return g.paths.RAM }

// dumpPoll is how often a QEMU dump's progress is asked for.
const dumpPoll = 200 * time.Millisecond

// dumpSettle bounds the wait for QEMU to finish a dump after an abort.
const dumpSettle = time.Minute

// QEMUDump has QEMU write its own dump (format elf or kdump-zlib) into f,
// passed to QEMU with getfd, and returns when QEMU reports it completed,
// reporting progress (bytes of guest memory done and total) on the way.
// QEMU 7.2 cannot cancel a dump: when ctx ends, QEMUDump still waits (at
// most dumpSettle more) for QEMU to finish, so that nothing writes to
// f afterwards, and returns ctx's cause.
func (g *Guest) QEMUDump(ctx context.Context, f *os.File, format string, progress func(done, total uint64)) error {
	name := g.fdName("dump")
	if err := g.mon.GetFD(ctx, name, f); err != nil {
		return fmt.Errorf("qemu: dump: %w", err)
	}
	if err := g.mon.DumpGuestMemoryDetached(ctx, "fd:"+name, format); err != nil {
		g.closeFD(name)
		return fmt.Errorf("qemu: dump: %w", err)
	}
	t := time.NewTicker(dumpPoll)
	defer t.Stop()
	var cause error
	var deadline <-chan time.Time
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			if cause == nil {
				cause = context.Cause(ctx)
				deadline = time.After(dumpSettle)
			}
		case <-deadline:
			return fmt.Errorf("qemu: dump: QEMU did not finish after the abort: %w", cause)
		case <-g.proc.done:
			return errors.New("qemu: dump: QEMU exited")
		}
		qctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		d, err := g.mon.QueryDump(qctx)
		cancel()
		if err != nil {
			return fmt.Errorf("qemu: dump: query-dump: %w", err)
		}
		if progress != nil && d.Total > 0 {
			progress(d.Completed, d.Total)
		}
		switch d.Status {
		case "completed":
			if cause != nil {
				return fmt.Errorf("qemu: dump: %w", cause)
			}
			return nil
		case "failed":
			return errors.New("qemu: dump: QEMU reports the dump failed")
		}
	}
}
