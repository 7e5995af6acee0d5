package coredump

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/internal/zstdenc"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// BenchmarkPageCompressors: each kdump page compressor alone, one
// goroutine, page by page as the pipeline's workers call it, on the
// text-like and random pages of the save's mix and on the mix's non-zero
// pages. "zstd" is the writer's (libzstd level 1 with cgo); "zstd-pure-go"
// is klauspost's encoder as a build without cgo has it, the reference;
// "zstd-pure-go-no-random-test" is that encoder as it was before, trying
// random pages too.
// cpu-s/GiB of pages (getrusage) and the stored size (a page that does
// not shrink is stored raw, as the writer does); docs/performance.md.
//
//	go test ./coredump -run '^$' -bench PageCompressors -benchtime 3x
func BenchmarkPageCompressors(b *testing.B) {
	nonZero := func(m pagemix.Mix, n int) []byte {
		ram := make([]byte, n*PageSize)
		if _, err := m.Fill(ram, 1); err != nil {
			b.Fatal(err)
		}
		var out []byte
		for off := 0; off < len(ram); off += PageSize {
			if p := ram[off : off+PageSize]; !bytes.Equal(p, zeroPage) {
				out = append(out, p...)
			}
		}
		return out
	}
	inputs := []struct {
		name  string
		pages []byte
	}{
		{"text", nonZero(pagemix.Mix{Text: 100}, 4096)},
		{"random", nonZero(pagemix.Mix{Random: 100}, 4096)},
		{"mix", nonZero(pagemix.Default, 8192)},
	}
	comp := func(flag uint32) func() pageCompressor {
		return func() pageCompressor {
			c, err := newCompressor(flag)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
	}
	for _, c := range []struct {
		name string
		new  func() pageCompressor
	}{
		{"zstd", comp(FlagZstd)},
		{"zstd-pure-go", func() pageCompressor {
			e, err := zstdenc.NewPureGo(zstdPureGo()...)
			if err != nil {
				b.Fatal(err)
			}
			return zstdCompressor{e}
		}},
		{"zstd-pure-go-no-random-test", func() pageCompressor { // main before libzstd
			e, err := zstdenc.NewPureGo(zstdPureGo()...)
			if err != nil {
				b.Fatal(err)
			}
			return encodeOnly{e}
		}},
		{"zlib", comp(FlagZlib)},
		{"snappy", comp(FlagSnappy)},
	} {
		for _, in := range inputs {
			b.Run(c.name+"/"+in.name, func(b *testing.B) {
				pc := c.new()
				dst := make([]byte, 0, 2*PageSize)
				var stored int
				c0 := rusage()
				for range b.N {
					stored = 0
					for off := 0; off < len(in.pages); off += PageSize {
						out, ok := pc.compress(dst[:0], in.pages[off:off+PageSize])
						if !ok {
							out = out[:PageSize]
						}
						stored += len(out)
					}
				}
				cpu := (rusage() - c0).Seconds()
				total := float64(len(in.pages)) * float64(b.N)
				b.ReportMetric(total/1e6/cpu, "MB/cpu-s")
				b.ReportMetric(cpu/(total/(1<<30)), "cpu-s/GiB")
				b.ReportMetric(float64(stored)/float64(len(in.pages)), "size-x")
			})
		}
	}
}

func rusage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// encodeOnly tries every page, as the zstd compressor did before it
// stored random-looking pages without trying.
type encodeOnly struct{ e *zstdenc.Encoder }

func (z encodeOnly) compress(dst, page []byte) ([]byte, bool) {
	out, err := z.e.Encode(dst, page)
	if err != nil || len(out)-len(dst) >= len(page) {
		return dst, false
	}
	return out, true
}
