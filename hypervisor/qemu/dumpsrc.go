package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmledger/vmledger/coredump"
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

// DIMMs are the guest's pc-dimm memory devices (query-memory-devices),
// each with its memory-backend-file (dimm-<id>.ram in the run directory),
// so that a dump also holds hot-plugged memory. A DIMM whose backend is
// not one of ours is an error: a dump without it would be silently short.
func (g *Guest) DIMMs(ctx context.Context) ([]coredump.FileRange, error) {
	var devs []struct {
		Type string `json:"type"`
		Data struct {
			ID     string `json:"id"`
			Addr   uint64 `json:"addr"`
			Size   uint64 `json:"size"`
			Memdev string `json:"memdev"`
		} `json:"data"`
	}
	if err := g.mon.Execute(ctx, "query-memory-devices", nil, &devs); err != nil {
		return nil, fmt.Errorf("qemu: query-memory-devices: %w", err)
	}
	out := make([]coredump.FileRange, 0, len(devs))
	for _, d := range devs {
		if d.Type != "dimm" {
			return nil, fmt.Errorf("qemu: memory device %q of type %q cannot be dumped", d.Data.ID, d.Type)
		}
		if d.Data.Memdev != "/objects/"+memObject(d.Data.ID) {
			return nil, fmt.Errorf("qemu: DIMM %q is backed by %q, not by its own file", d.Data.ID, d.Data.Memdev)
		}
		out = append(out, coredump.FileRange{Addr: d.Data.Addr, Size: d.Data.Size, Path: dimmFile(g.paths, d.Data.ID)})
	}
	return out, nil
}
