package coredump

import (
	"bytes"
	"fmt"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/internal/randompage"
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
	if randompage.Is(page) {
		return dst, false
	}
	n := len(dst)
	out, err := z.e.Encode(dst, page)
	if err != nil || len(out)-n >= len(page) {
		return out[:n], false
	}
	return out, true
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
