package migrate

import (
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/internal/zstdenc"
)

// BenchmarkCodecs compares, chunk by chunk on the QEMU-like stream, the two
// codecs as the Writer configures them with the alternatives that were
// weighed against them: klauspost's encoder as a build without cgo has it
// (zstd-pure-go, the reference for libzstd's levels; the zstd-with-...
// rows vary it), libzstd's levels 1 to -3 (with cgo; without, they are
// the pure-Go encoder's defaults), zstd with its entropy stage, a smaller window, the
// lower-memory encoder or the default level, and klauspost's S2 (its own
// format, and its snappy-compatible output that a snappy image could hold).
// Single goroutine: cpu-s/GiB is the cost of one worker.
//
//	go test ./migrate -run '^$' -bench Codecs -benchtime 2x
func BenchmarkCodecs(b *testing.B) {
	stream := qemuLikeStream(64 << 20)
	zstdWith := func(opts ...zstd.EOption) func(dst, src []byte) []byte {
		base := []zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
			zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(zstdWindow(DefaultChunkSize))}
		enc, err := zstd.NewWriter(nil, append(base, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		return func(dst, src []byte) []byte { return enc.EncodeAll(src, dst[:0]) }
	}
	encWith := func(e *zstdenc.Encoder, err error) func(dst, src []byte) []byte {
		if err != nil {
			b.Fatal(err)
		}
		return func(dst, src []byte) []byte {
			out, err := e.Encode(dst[:0], src)
			if err != nil {
				b.Fatal(err)
			}
			return out
		}
	}
	ours := func(c Compression) func(dst, src []byte) []byte {
		cd, err := newCodec(c, DefaultChunkSize)
		if err != nil {
			b.Fatal(err)
		}
		return cd.compress
	}
	for _, v := range []struct {
		name string
		enc  func(dst, src []byte) []byte
	}{
		{"zstd-as-written", ours(Zstd)},
		{"zstd-pure-go", encWith(zstdenc.NewPureGo(zstdPureGo(DefaultChunkSize)...))},
		{"zstd-c-level-1", encWith(zstdenc.New(1))},
		{"zstd-c-level-minus-1", encWith(zstdenc.New(-1))},
		{"zstd-c-level-minus-2", encWith(zstdenc.New(-2))},
		{"zstd-c-level-minus-3", encWith(zstdenc.New(-3))},
		{"zstd-with-entropy", zstdWith()},
		{"zstd-window-128k", zstdWith(zstd.WithNoEntropyCompression(true), zstd.WithWindowSize(128<<10))},
		{"zstd-lower-mem", zstdWith(zstd.WithNoEntropyCompression(true), zstd.WithLowerEncoderMem(true))},
		{"zstd-default-level", zstdWith(zstd.WithNoEntropyCompression(true), zstd.WithEncoderLevel(zstd.SpeedDefault))},
		{"snappy-as-written", ours(Snappy)},
		{"s2", func(dst, src []byte) []byte { return s2.Encode(dst[:cap(dst)], src) }},
		{"s2-better", func(dst, src []byte) []byte { return s2.EncodeBetter(dst[:cap(dst)], src) }},
		{"s2-snappy-compatible", func(dst, src []byte) []byte { return s2.EncodeSnappy(dst[:cap(dst)], src) }},
		{"s2-snappy-compatible-better", func(dst, src []byte) []byte { return s2.EncodeSnappyBetter(dst[:cap(dst)], src) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			dst := make([]byte, 0, snappy.MaxEncodedLen(DefaultChunkSize))
			var stored int
			c0 := processCPU()
			for i := 0; i < b.N; i++ {
				stored = 0
				for off := 0; off < len(stream); off += DefaultChunkSize {
					chunk := stream[off:min(off+DefaultChunkSize, len(stream))]
					stored += min(len(v.enc(dst, chunk)), len(chunk)) // stored raw when not smaller
				}
			}
			reportCPU(b, c0, len(stream))
			b.ReportMetric(float64(stored)/float64(len(stream)), "size-x")
		})
	}
}
