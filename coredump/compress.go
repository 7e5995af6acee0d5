package coredump

import (
	"bytes"
	"fmt"
	"math/bits"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/internal/zstdenc"
)

// pageCompressor compresses one page at a time; each worker owns one.
type pageCompressor interface {
	// compress appends the compressed page to dst; ok is false when the
	// result would not be smaller than the page (it is then stored raw,
	// as makedumpfile and QEMU do).
	compress(dst, page []byte) (out []byte, ok bool)
}

// zstdLevel is libzstd's level for kdump-zstd pages.
const zstdLevel = -1

func newCompressor(flag uint32) (pageCompressor, error) {
	switch flag {
	case FlagZlib:
		// Level 1, as QEMU (Z_BEST_SPEED) and makedumpfile -c use.
		w, err := zlib.NewWriterLevel(nil, zlib.BestSpeed)
		if err != nil {
			return nil, fmt.Errorf("coredump: zlib: %w", err)
		}
		return &zlibCompressor{w: w}, nil
	case FlagSnappy:
		return snappyCompressor{}, nil
	case FlagZstd:
		// libzstd with cgo (1.3-1.5x less CPU per text page than
		// klauspost's fastest, and smaller), else the pure-Go encoder.
		// Level -1, not makedumpfile's 1: the guest is paused while its
		// dump is written, and -1 takes about a quarter less CPU for a
		// file 9% larger, still smaller than snappy's
		// (docs/performance.md, "C zstd through cgo"). One per worker,
		// with no goroutines of its own: the pipeline is the parallelism.
		e, err := zstdenc.New(zstdLevel, zstdPureGo()...)
		if err != nil {
			return nil, fmt.Errorf("coredump: zstd: %w", err)
		}
		return zstdCompressor{e}, nil
	case 0:
		return rawCompressor{}, nil
	}
	return nil, fmt.Errorf("coredump: no compressor for flag %#x", flag)
}

type zlibCompressor struct {
	w   *zlib.Writer
	buf bytes.Buffer
}

func (z *zlibCompressor) compress(dst, page []byte) ([]byte, bool) {
	z.buf.Reset()
	z.w.Reset(&z.buf)
	if _, err := z.w.Write(page); err != nil {
		return dst, false
	}
	if err := z.w.Close(); err != nil || z.buf.Len() >= len(page) {
		return dst, false
	}
	return append(dst, z.buf.Bytes()...), true
}

type snappyCompressor struct{}

func (snappyCompressor) compress(dst, page []byte) ([]byte, bool) {
	n := len(dst)
	need := snappy.MaxEncodedLen(len(page))
	if cap(dst)-n < need {
		dst = append(dst[:n:n], make([]byte, need)...)[:n]
	}
	out := snappy.Encode(dst[n:n+need], page)
	if len(out) >= len(page) {
		return dst, false
	}
	return dst[:n+len(out)], true
}

// zstdPureGo configures klauspost's encoder for pages, in builds without
// cgo: its fastest level, a page-sized window, no frame checksum.
func zstdPureGo() []zstd.EOption {
	return []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1 << 15), zstd.WithEncoderCRC(false)}
}

type zstdCompressor struct{ e *zstdenc.Encoder }

// compress stores the page raw if the encoder fails (it cannot at a
// valid level): the dump stays correct, only larger. A page of random
// bytes is stored raw without trying: libzstd's matcher spends ~10 µs on
// one (klauspost's gives up in ~2), more than the test costs (~1 µs).
func (z zstdCompressor) compress(dst, page []byte) ([]byte, bool) {
	if looksRandom(page) {
		return dst, false
	}
	n := len(dst)
	out, err := z.e.Encode(dst, page)
	if err != nil || len(out)-n >= len(page) {
		return out[:n], false
	}
	return out, true
}

// looksRandom says that a page holds random bytes (encrypted or
// compressed memory), which no codec shrinks: at least 210 distinct
// values among every 7th byte (585 samples, across every byte of 8-byte
// words), and as many among the differences of those bytes to the ones
// before them, so that a periodic ramp (0, 1, ..., 255, 0, ...) is not
// taken for random. Random bytes give 230 ± 4 on both. Text gives about
// 35; on the pages of the qemu, go and libc binaries at most 0.04% of
// what zstd saves would be lost (their few pages of near-uniform bytes);
// 99% of an initramfs's pages (compressed) are detected. The second count is only
// taken on pages that pass the first.
func looksRandom(page []byte) bool {
	const stride, threshold = 7, 210
	var seen [4]uint64
	for i := 0; i < len(page); i += stride {
		c := page[i]
		seen[c>>6] |= 1 << (c & 63)
		// A quarter of the way (147 samples), random bytes show 112 ± 6
		// distinct values and text about 30: stop looking at text there
		// (it was 8% of a kdump-zstd dump's CPU). A page that fails here
		// and would have passed is compressed, which only costs time.
		if i == earlyLook && distinct(&seen) < earlyThreshold {
			return false
		}
	}
	if distinct(&seen) < threshold {
		return false
	}
	seen = [4]uint64{}
	for i := stride; i < len(page); i += stride {
		c := page[i] - page[i-1]
		seen[c>>6] |= 1 << (c & 63)
	}
	return distinct(&seen) >= threshold
}

// The early exit of looksRandom: after sample 147 (byte 1022), fewer than
// 64 distinct values.
const earlyLook, earlyThreshold = 146 * 7, 64

func distinct(seen *[4]uint64) int {
	return bits.OnesCount64(seen[0]) + bits.OnesCount64(seen[1]) + bits.OnesCount64(seen[2]) + bits.OnesCount64(seen[3])
}

type rawCompressor struct{}

func (rawCompressor) compress(dst, _ []byte) ([]byte, bool) { return dst, false }

// pageDecompressor decodes one stored page.
type pageDecompressor struct {
	zr   zlibReader
	zstd *zstd.Decoder
}

type zlibReader struct {
	src bytes.Reader
}

func (d *pageDecompressor) decompress(flags uint32, src, dst []byte) error {
	switch {
	case flags&FlagZlib != 0:
		d.zr.src.Reset(src)
		r, err := zlib.NewReader(&d.zr.src)
		if err != nil {
			return fmt.Errorf("zlib: %w", err)
		}
		defer r.Close()
		return readFull(r, dst, "zlib")
	case flags&FlagSnappy != 0:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return fmt.Errorf("snappy: %w", err)
		}
		if n != len(dst) {
			return fmt.Errorf("snappy: page decodes to %d bytes, want %d", n, len(dst))
		}
		if _, err := snappy.Decode(dst, src); err != nil {
			return fmt.Errorf("snappy: %w", err)
		}
		return nil
	case flags&FlagZstd != 0:
		if d.zstd == nil {
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<24))
			if err != nil {
				return fmt.Errorf("zstd: %w", err)
			}
			d.zstd = dec
		}
		out, err := d.zstd.DecodeAll(src, dst[:0:len(dst)])
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		if len(out) != len(dst) {
			return fmt.Errorf("zstd: page decodes to %d bytes, want %d", len(out), len(dst))
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
		return nil
	case flags&FlagLZO != 0:
		return fmt.Errorf("lzo: not supported (no maintained Go LZO library)")
	}
	if len(src) != len(dst) {
		return fmt.Errorf("uncompressed page of %d bytes, want %d", len(src), len(dst))
	}
	copy(dst, src)
	return nil
}

func (d *pageDecompressor) close() {
	if d.zstd != nil {
		d.zstd.Close()
	}
}
