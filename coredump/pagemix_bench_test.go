package coredump_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// BenchmarkWritePagemix: the writers alone (no QEMU), on 256 MiB of RAM
// in a file holding the save benchmark's page mix, to a file in the
// page cache. cpu-s/GiB of guest RAM (getrusage of the process) is the
// figure the shared machine's load moves least; docs/performance.md.
//
//	go test ./coredump -run '^$' -bench WritePagemix -benchtime 3x
func BenchmarkWritePagemix(b *testing.B) {
	const ramSize = 256 << 20
	dir := b.TempDir()
	ramPath := filepath.Join(dir, "ram")
	if err := os.WriteFile(ramPath, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(ramPath, ramSize); err != nil {
		b.Fatal(err)
	}
	if _, err := pagemix.Default.FillFile(ramPath, 1); err != nil {
		b.Fatal(err)
	}
	ram, err := os.Open(ramPath)
	if err != nil {
		b.Fatal(err)
	}
	defer ram.Close()
	fi, _ := ram.Stat()
	m := coredump.MemoryMap{{Addr: 0, Size: uint64(fi.Size()), Offset: 0}}
	for _, c := range []struct {
		f    coredump.Format
		flat bool
	}{{coredump.FormatELF, false}, {coredump.FormatKdumpZlib, false}, {coredump.FormatKdumpSnappy, false},
		{coredump.FormatKdumpZstd, false}, {coredump.FormatKdumpZstd, true}} {
		name := string(c.f)
		if c.flat {
			name += "-flat"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(fi.Size())
			var size uint64
			var elapsed, cpu time.Duration
			for range b.N {
				syscall.Sync() // each run starts from a clean page cache
				t0, c0 := time.Now(), rusageCPU()
				out, err := os.Create(filepath.Join(dir, "dump"))
				if err != nil {
					b.Fatal(err)
				}
				st, err := coredump.Write(context.Background(), out, ram, m, coredump.Options{Format: c.f, Flattened: c.flat})
				if cerr := out.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					b.Fatal(err)
				}
				elapsed, cpu = elapsed+time.Since(t0), cpu+rusageCPU()-c0
				size = st.Bytes
			}
			b.ReportMetric(float64(fi.Size())*float64(b.N)/(1<<20)/elapsed.Seconds(), "MiB/s")
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(fi.Size())/(1<<30)), "cpu-s/GiB")
			b.ReportMetric(float64(size)/float64(fi.Size()), "size-x")
		})
	}
}

func rusageCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
