package coredump_test

import (
	"context"
	"os"
	"path/filepath"
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
	report := func(b *testing.B, size int64, elapsed time.Duration) {
		b.ReportMetric(gib/(1<<20)/(elapsed.Seconds()/float64(b.N)), "MiB/s")
		b.ReportMetric(float64(size)/(1<<20), "MiB-file")
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
			t0 := time.Now()
			for range b.N {
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
				size = int64(st.Bytes)
				os.Remove(path)
			}
			report(b, size, time.Since(t0))
		})
	}
	for _, qf := range []string{"elf", "kdump-zlib"} {
		b.Run("qemu/"+qf, func(b *testing.B) {
			var size int64
			t0 := time.Now()
			for range b.N {
				path := filepath.Join(dir, "qemu")
				if err := tg.g.Monitor().DumpGuestMemory(ctxT(b, 10*time.Minute), path, qf); err != nil {
					b.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				size = fi.Size()
				os.Remove(path)
			}
			report(b, size, time.Since(t0))
		})
	}
}
