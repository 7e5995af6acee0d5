package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

type discardFile struct{ n int64 }

func (d *discardFile) Write(p []byte) (int, error)            { d.n += int64(len(p)); return len(p), nil }
func (d *discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (d *discardFile) Sync() error                            { return nil }

// qemuLikeStream is what QEMU's stream holds for RAM of the page mix: its
// non-zero pages, each after an 8-byte page header (QEMU sends no zero
// page). Of 64 MiB of RAM it makes ~37 MB, 36% random pages and 64% text.
func qemuLikeStream(ramBytes int) []byte {
	ram := make([]byte, ramBytes)
	pagemix.Default.Fill(ram, 1)
	out := make([]byte, 0, ramBytes)
	zero := make([]byte, pagemix.PageSize)
	for off := 0; off < len(ram); off += pagemix.PageSize {
		p := ram[off : off+pagemix.PageSize]
		if bytes.Equal(p, zero) {
			continue
		}
		out = binary.BigEndian.AppendUint64(out, uint64(off)|0x28) // RAM_SAVE_FLAG_PAGE|CONTINUE
		out = append(out, p...)
	}
	return out
}

// BenchmarkWriter, BenchmarkReader and BenchmarkScan: the pipeline's own
// cost on a QEMU-like stream of the page mix, per codec, in CPU-seconds
// per GiB of stream (the figure the load moves least) and MB/s.
func BenchmarkWriter(b *testing.B) { benchWrite(b, qemuLikeStream(64<<20)) }

// BenchmarkWriterRandom: 64 MiB of random bytes (encrypted or compressed
// guest memory), which the Writer stores without trying the codec.
func BenchmarkWriterRandom(b *testing.B) {
	random := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i+8 <= len(random); i += 8 {
		binary.LittleEndian.PutUint64(random[i:], rng.Uint64())
	}
	benchWrite(b, random)
}

func benchWrite(b *testing.B, ram []byte) {
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
	benchRead(b, func(img []byte) error {
		rd, err := NewReader(bytes.NewReader(img))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rd)
		return err
	})
}

// BenchmarkScan: the check a restore runs before it starts QEMU, against
// BenchmarkReader's full pass.
func BenchmarkScan(b *testing.B) {
	benchRead(b, func(img []byte) error {
		_, err := Scan(context.Background(), bytes.NewReader(img))
		return err
	})
}

// benchRead times read on an image of the QEMU-like stream, per codec.
func benchRead(b *testing.B, read func(img []byte) error) {
	ram := qemuLikeStream(64 << 20)
	for _, c := range []Compression{None, Zstd, Snappy} {
		img := writeImage(b, testConfig, ram, Options{Compression: c})
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(ram)))
			c0 := processCPU()
			for i := 0; i < b.N; i++ {
				if err := read(img); err != nil {
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
	b.ReportMetric(cpu.Seconds()/(float64(size)*float64(b.N)/(1<<30)), "cpu-s/GiB")
}

// BenchmarkWriterFrom: the stream as StreamOut reads it from QEMU's pipe
// (reads of at most 1 MiB), copied through a 1 MiB buffer into Write (as
// before) or read straight into the chunk buffers (ReadStreamFrom).
func BenchmarkWriterFrom(b *testing.B) {
	stream := qemuLikeStream(64 << 20)
	for _, c := range []Compression{None, Zstd, Snappy} {
		for _, direct := range []bool{false, true} {
			name := c.String() + "/copy"
			if direct {
				name = c.String() + "/direct"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(stream)))
				buf := make([]byte, 1<<20)
				c0 := processCPU()
				for i := 0; i < b.N; i++ {
					w, err := NewWriter(&discardFile{}, testConfig, Options{Compression: c})
					if err != nil {
						b.Fatal(err)
					}
					src := io.LimitReader(pipeLike{bytes.NewReader(stream)}, int64(len(stream)))
					if direct {
						_, err = w.ReadStreamFrom(src)
					} else {
						_, err = io.CopyBuffer(struct{ io.Writer }{w}, src, buf)
					}
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, c0, len(stream))
			})
		}
	}
}

// pipeLike returns at most a pipe's 1 MiB per read.
type pipeLike struct{ r io.Reader }

func (p pipeLike) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), 1<<20)]) }
