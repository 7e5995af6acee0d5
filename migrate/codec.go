package migrate

import (
	"fmt"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/vmledger/vmledger/internal/randompage"
	"github.com/vmledger/vmledger/internal/zstdenc"
)

// codec compresses or expands one chunk. Each worker has its own, since
// the zstd encoder and decoder keep state.
type codec interface {
	compress(dst, src []byte) []byte
	// expand returns exactly rawLen bytes or an error.
	expand(dst, src []byte, rawLen int) ([]byte, error)
}

func newCodec(c Compression, chunkSize int) (codec, error) {
	switch c {
	case None:
		return noneCodec{}, nil
	case Snappy:
		return snappyCodec{}, nil
	case Zstd:
		enc, err := zstdenc.New(zstdLevel, zstdPureGo(chunkSize)...)
		if err != nil {
			return nil, err
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(uint64(chunkSize)), zstd.WithDecoderMaxWindow(uint64(MaxChunkSize)))
		if err != nil {
			return nil, err
		}
		return &zstdCodec{enc: enc, dec: dec}, nil
	}
	return nil, fmt.Errorf("migrate: unknown compression %d", c)
}

// zstdLevel is libzstd's level for the chunks (builds with cgo): the
// stream is hundreds of MB that must go to disk about as fast as QEMU
// produces it. Level -1 costs about 1.7x less CPU than klauspost's
// fastest on the page mix, for chunks of 0.586x the stream against
// 0.578x (level 1: 0.583x, 1.3x less; -3: 0.599x, too near the 0.6x
// bound). Negative levels store the literals raw, as the pure-Go setting
// below does. docs/performance.md, "C zstd through cgo".
const zstdLevel = -1

// zstdPureGo configures klauspost's encoder for builds without cgo: the
// fastest level; a higher one costs several times the CPU for a few
// percent. No frame checksum (every chunk has its CRC-32C and the stream
// its XXH64) and no entropy stage: on guest RAM the matches do the work,
// and Huffman coding the literals cost a fifth more CPU for the same
// size (measured on the page mix).
func zstdPureGo(chunkSize int) []zstd.EOption {
	return []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(zstdWindow(chunkSize)),
		zstd.WithEncoderCRC(false), zstd.WithNoEntropyCompression(true)}
}

// incompressible says, from 16 samples of 4 KiB spread over a chunk of at
// least 64 KiB, that compressing it is not worth trying: every sample
// looks like random bytes (randompage.Is, the dump writer's per-page
// test). A chunk with any compressible sample is compressed as before;
// one that is all random pages (encrypted or compressed guest memory) is
// stored without spending the codec's CPU on it. The format is unchanged:
// such a chunk would have been stored raw anyway, after the codec failed
// to make it smaller.
func incompressible(chunk []byte) bool {
	const samples, window = 16, 4 << 10
	if len(chunk) < samples*window {
		return false
	}
	step := (len(chunk) - window) / (samples - 1)
	for i := range samples {
		if !randompage.Is(chunk[i*step : i*step+window]) {
			return false
		}
	}
	return true
}

// maxStoredLen bounds what any codec makes of n raw bytes (snappy's bound
// is the largest: zstd adds at most a few bytes per 128 KiB block).
func maxStoredLen(n int) int { return snappy.MaxEncodedLen(n) }

// zstdWindow is the smallest power of two window covering a chunk.
func zstdWindow(chunkSize int) int {
	w := zstd.MinWindowSize
	for w < chunkSize && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

type noneCodec struct{}

func (noneCodec) compress(dst, src []byte) []byte { return append(dst[:0], src...) }
func (noneCodec) expand(dst, src []byte, rawLen int) ([]byte, error) {
	return nil, fmt.Errorf("compressed chunk in an image without compression")
}

type snappyCodec struct{}

func (snappyCodec) compress(dst, src []byte) []byte {
	if n := snappy.MaxEncodedLen(len(src)); cap(dst) < n {
		dst = make([]byte, n)
	}
	return snappy.Encode(dst[:cap(dst)], src)
}

func (snappyCodec) expand(dst, src []byte, rawLen int) ([]byte, error) {
	if err := claimedLen(Snappy, src, rawLen); err != nil {
		return nil, err
	}
	if cap(dst) < rawLen {
		dst = make([]byte, rawLen)
	}
	out, err := snappy.Decode(dst[:rawLen], src)
	if err != nil {
		return nil, err // snappy's errors say "snappy: ..."
	}
	return out, nil
}

type zstdCodec struct {
	enc *zstdenc.Encoder
	dec *zstd.Decoder
}

// compress returns a copy of src if the encoder fails (it cannot at a
// valid level), which is not smaller, so the Writer stores the chunk raw.
func (z *zstdCodec) compress(dst, src []byte) []byte {
	out, err := z.enc.Encode(dst[:0], src)
	if err != nil {
		return append(dst[:0], src...)
	}
	return out
}

func (z *zstdCodec) expand(dst, src []byte, rawLen int) ([]byte, error) {
	out, err := z.dec.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("zstd data expands to %d bytes, the chunk says %d", len(out), rawLen)
	}
	return out, nil
}

// claimedLen checks the length that a compressed payload's own header
// announces against the chunk's raw length, without expanding it.
func claimedLen(c Compression, src []byte, rawLen int) error {
	switch c {
	case Snappy:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return err // snappy's errors say "snappy: ..."
		}
		if n != rawLen {
			return fmt.Errorf("snappy data expands to %d bytes, the chunk says %d", n, rawLen)
		}
	case Zstd:
		var h zstd.Header
		if err := h.Decode(src); err != nil {
			return fmt.Errorf("zstd frame header: %w", err)
		}
		if h.Skippable {
			return fmt.Errorf("zstd skippable frame, want a data frame")
		}
		if h.HasFCS && h.FrameContentSize != uint64(rawLen) {
			return fmt.Errorf("zstd frame says %d bytes, the chunk says %d", h.FrameContentSize, rawLen)
		}
	}
	return nil
}
