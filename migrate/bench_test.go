package migrate

import (
	"bytes"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

type discardFile struct{ n int64 }

func (d *discardFile) Write(p []byte) (int, error)            { d.n += int64(len(p)); return len(p), nil }
func (d *discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (d *discardFile) Sync() error                            { return nil }

// BenchmarkWriter and BenchmarkReader: the pipeline's own speed on RAM of
// the page mix (not QEMU's stream format, but its content), per codec.
func BenchmarkWriter(b *testing.B) {
	ram := make([]byte, 64<<20)
	pagemix.Default.Fill(ram, 1)
	for _, c := range []Compression{None, Zstd, Snappy} {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(ram)))
			var out int64
			c0 := processCPU()
			for i := 0; i < b.N; i++ {
				f := &discardFile{}
				w, err := NewWriter(f, testConfig, Options{Compression: c})
				if err != nil {
					b.Fatal(err)
				}
				w.Write(ram)
				if _, err := w.Commit(); err != nil {
					b.Fatal(err)
				}
				out = f.n
			}
			reportCPU(b, c0, len(ram))
			b.ReportMetric(float64(out)/float64(len(ram)), "size-x")
		})
	}
}

func BenchmarkReader(b *testing.B) {
	ram := make([]byte, 64<<20)
	pagemix.Default.Fill(ram, 1)
	for _, c := range []Compression{None, Zstd, Snappy} {
		img := writeImage(b, testConfig, ram, Options{Compression: c})
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(ram)))
			c0 := processCPU()
			for i := 0; i < b.N; i++ {
				rd, err := NewReader(bytes.NewReader(img))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rd); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, c0, len(ram))
		})
	}
}

// processCPU is this process's user+system time: on a shared machine the
// CPU cost moves much less with the load than the wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, c0 time.Duration, size int) {
	cpu := processCPU() - c0
	b.ReportMetric(float64(size)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
}
