package coredump_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// BenchmarkDump1GiB writes dumps of a paused 1 GiB pc guest whose RAM
// holds the save benchmark's page mix (migrate/pagemix: 45% zero, 35%
// text-like, 20% random), ours and
// QEMU's dump-guest-memory side by side in one run, to files in the same
// directory. Figures: docs/performance.md.
//
//	go test -run '^$' -bench Dump1GiB -benchtime 3x ./coredump/
func BenchmarkDump1GiB(b *testing.B) {
	tg := startFilled(b, "pc", 1024, 1, [][2]uint64{})
	counts, err := pagemix.Default.FillFile(tg.g.Paths().RAM, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("RAM: %v", counts)
	cpus, err := tg.g.CPUStates(ctxT(b, time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	gib := float64(tg.m.Pages() * coredump.PageSize)
	// CPU time is reported beside wall time: on this shared machine the
	// wall clock moves with everyone's load, CPU seconds much less.
	report := func(b *testing.B, size int64, elapsed, cpu time.Duration) {
		b.ReportMetric(gib/(1<<20)/(elapsed.Seconds()/float64(b.N)), "MiB/s")
		b.ReportMetric(float64(size)/(1<<20), "MiB-file")
		b.ReportMetric(cpu.Seconds()/float64(b.N), "CPU-s")
		b.ReportMetric(0, "ns/op") // the MiB/s says it; ns/op of a multi-second op reads badly
	}
	for _, c := range []struct {
		f    coredump.Format
		flat bool
	}{{coredump.FormatELF, false}, {coredump.FormatKdumpZlib, false}, {coredump.FormatKdumpZlib, true},
		{coredump.FormatKdumpSnappy, false}, {coredump.FormatKdumpZstd, false}, {coredump.FormatKdumpZstd, true}} {
		name := "vmledger/" + string(c.f)
		if c.flat {
			name += "-flat"
		}
		b.Run(name, func(b *testing.B) {
			var size int64
			var elapsed, cpu time.Duration
			for range b.N {
				t0, c0 := settle(b, selfCPU)
				path := filepath.Join(dir, "ours")
				out, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				st, err := coredump.Write(context.Background(), out, tg.ram, tg.m, coredump.Options{Format: c.f, Flattened: c.flat, CPUs: cpus})
				out.Close()
				if err != nil {
					b.Fatal(err)
				}
				elapsed, cpu = elapsed+time.Since(t0), cpu+selfCPU(b)-c0
				size = int64(st.Bytes)
				os.Remove(path)
			}
			report(b, size, elapsed, cpu)
		})
	}
	for _, qf := range []string{"elf", "kdump-zlib"} {
		b.Run("qemu/"+qf, func(b *testing.B) {
			var size int64
			var elapsed, cpu time.Duration
			qemuCPU := func(b *testing.B) time.Duration { return procCPU(b, tg.g.PID()) }
			for range b.N {
				path := filepath.Join(dir, "qemu")
				t0, c0 := settle(b, qemuCPU)
				if err := tg.g.Monitor().DumpGuestMemory(ctxT(b, 10*time.Minute), path, qf); err != nil {
					b.Fatal(err)
				}
				elapsed, cpu = elapsed+time.Since(t0), cpu+qemuCPU(b)-c0
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				size = fi.Size()
				os.Remove(path)
			}
			report(b, size, elapsed, cpu)
		})
	}
}

// settle flushes every dirty page to disk (the RAM file just filled, the
// dump before) and then starts the clocks: each dump, ours or QEMU's,
// starts from the same clean page cache, instead of the first one
// competing with the writeback of the 1 GiB fill.
func settle(b *testing.B, cpu func(*testing.B) time.Duration) (time.Time, time.Duration) {
	syscall.Sync()
	return time.Now(), cpu(b)
}

// selfCPU is this process's user+system CPU time.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is process pid's user+system CPU time (/proc/pid/stat, in
// clock ticks of 1/100 s).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
