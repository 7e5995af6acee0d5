package migrate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The magics. Both are 8 bytes at offset 0; only the last step of a save
// writes the final one.
var (
	magicFinal   = [8]byte{'V', 'M', 'L', 'S', 'A', 'V', 'E', 0x01}
	magicPartial = [8]byte{'V', 'M', 'L', 'P', 'A', 'R', 'T', 0x01}
)

const (
	// Version is the image format version this package writes and reads.
	Version = 1

	headerSize      = 64
	chunkHeaderSize = 16
	endRecordSize   = 32

	// DefaultChunkSize is the raw size of a stream chunk: large enough for
	// the compressors to find repeats, small enough to spread over cores.
	DefaultChunkSize = 1 << 20
	// MaxChunkSize and MaxConfigSize bound what a reader allocates for a
	// hostile image.
	MaxChunkSize  = 16 << 20
	minChunkSize  = 4 << 10
	MaxConfigSize = 16 << 20

	flagWasRunning = 1 << 0
)

// Chunk record flags.
const (
	chunkCompressed uint32 = 1 // payload is compressed with the image's codec
	chunkStored     uint32 = 2 // payload is the raw data (compression did not help)
	chunkEnd        uint32 = 3 // end of stream record
)

// Compression is the codec of the stream chunks.
type Compression uint8

const (
	None   Compression = 0
	Zstd   Compression = 1
	Snappy Compression = 2
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zstd:
		return "zstd"
	case Snappy:
		return "snappy"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression maps "zstd", "snappy" and "none" to a Compression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd":
		return Zstd, nil
	case "snappy":
		return Snappy, nil
	case "none":
		return None, nil
	}
	return 0, fmt.Errorf("migrate: compression %q: must be zstd, snappy or none", s)
}

// Header is what an image says about itself.
type Header struct {
	Version     uint32
	WasRunning  bool // the guest ran when it was saved; restore resumes it by default
	Compression Compression
	ChunkSize   int    // raw bytes per chunk, the last one may be shorter
	ConfigLen   int    // length of the config that follows the header
	ConfigCRC   uint32 // CRC-32C of the config
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var le = binary.LittleEndian

// encodeHeader lays out the 64-byte header with the given magic. The
// header's own CRC covers bytes 8..59, not the magic, so that finishing
// the image changes only the magic.
func encodeHeader(h Header, magic [8]byte) []byte {
	b := make([]byte, headerSize)
	copy(b, magic[:])
	le.PutUint32(b[8:], h.Version)
	var flags uint32
	if h.WasRunning {
		flags |= flagWasRunning
	}
	le.PutUint32(b[12:], flags)
	b[16] = byte(h.Compression)
	le.PutUint32(b[20:], uint32(h.ChunkSize))
	le.PutUint64(b[24:], uint64(h.ConfigLen))
	le.PutUint32(b[32:], h.ConfigCRC)
	le.PutUint32(b[60:], crc(b[8:60]))
	return b
}

var (
	// ErrNotImage: the file does not start with either magic.
	ErrNotImage = errors.New("not a vmledger save image")
	// ErrIncomplete: the file has the partial magic: its save never
	// finished (it was cut short, failed or is still being written).
	ErrIncomplete = errors.New("incomplete save image: the save did not finish")
	// ErrCorrupt is wrapped by every *FormatError.
	ErrCorrupt = errors.New("damaged save image")
)

// FormatError says what is wrong with an image and where.
type FormatError struct {
	Offset int64  // byte offset in the image of the record at fault
	Part   string // "header", "config", "chunk 12", "end marker"
	Msg    string // what was found and what was expected
	Err    error  // ErrCorrupt, or a more precise sentinel
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("save image: %s at offset %d: %s", e.Part, e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() error { return e.Err }

func corrupt(off int64, part, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Part: part, Msg: fmt.Sprintf(format, args...), Err: ErrCorrupt}
}

// decodeHeader checks b (headerSize bytes) and returns the header.
func decodeHeader(b []byte) (Header, error) {
	var magic [8]byte
	copy(magic[:], b)
	switch magic {
	case magicFinal:
	case magicPartial:
		return Header{}, &FormatError{Part: "header", Msg: "partial magic " + fmt.Sprintf("%q", magic[:]) + ": the save did not finish", Err: ErrIncomplete}
	default:
		return Header{}, &FormatError{Part: "header", Msg: fmt.Sprintf("magic %q, want %q", magic[:], magicFinal[:]), Err: ErrNotImage}
	}
	if got, want := crc(b[8:60]), le.Uint32(b[60:]); got != want {
		return Header{}, corrupt(0, "header", "checksum is %#08x, the header says %#08x", got, want)
	}
	h := Header{
		Version:     le.Uint32(b[8:]),
		Compression: Compression(b[16]),
		ChunkSize:   int(le.Uint32(b[20:])),
		ConfigCRC:   le.Uint32(b[32:]),
	}
	if h.Version != Version {
		return Header{}, corrupt(8, "header", "version %d, this vmledger reads version %d", h.Version, Version)
	}
	flags := le.Uint32(b[12:])
	if flags&^flagWasRunning != 0 {
		return Header{}, corrupt(12, "header", "unknown flags %#x", flags&^flagWasRunning)
	}
	h.WasRunning = flags&flagWasRunning != 0
	if h.Compression > Snappy {
		return Header{}, corrupt(16, "header", "compression %d, want 0 (none), 1 (zstd) or 2 (snappy)", b[16])
	}
	if h.ChunkSize < minChunkSize || h.ChunkSize > MaxChunkSize {
		return Header{}, corrupt(20, "header", "chunk size %d, want %d to %d", h.ChunkSize, minChunkSize, MaxChunkSize)
	}
	cl := le.Uint64(b[24:])
	if cl > MaxConfigSize {
		return Header{}, corrupt(24, "header", "config length %d, at most %d", cl, MaxConfigSize)
	}
	h.ConfigLen = int(cl)
	for i, x := range b[17:20] {
		if x != 0 {
			return Header{}, corrupt(int64(17+i), "header", "reserved byte is %#x, want 0", x)
		}
	}
	for i, x := range b[36:60] {
		if x != 0 {
			return Header{}, corrupt(int64(36+i), "header", "reserved byte is %#x, want 0", x)
		}
	}
	return h, nil
}

// chunkRecord is the 16-byte header of a data chunk, or the start of the
// end record (whose flag is chunkEnd).
type chunkRecord struct {
	flag      uint32
	rawLen    uint32
	storedLen uint32
	crc       uint32 // CRC-32C of the first 12 bytes and the payload
}

func encodeChunkHeader(flag uint32, rawLen, storedLen int, payload []byte) []byte {
	b := make([]byte, chunkHeaderSize)
	le.PutUint32(b[0:], flag)
	le.PutUint32(b[4:], uint32(rawLen))
	le.PutUint32(b[8:], uint32(storedLen))
	c := crc32.Update(crc(b[:12]), castagnoli, payload)
	le.PutUint32(b[12:], c)
	return b
}

// endRecord closes the stream: how many chunks, how many raw bytes, and
// the XXH64 of the whole raw stream.
type endRecord struct {
	chunks   uint64
	rawBytes uint64
	xxh      uint64
}

func encodeEnd(e endRecord) []byte {
	b := make([]byte, endRecordSize)
	le.PutUint32(b[0:], chunkEnd)
	le.PutUint64(b[4:], e.chunks)
	le.PutUint64(b[12:], e.rawBytes)
	le.PutUint64(b[20:], e.xxh)
	le.PutUint32(b[28:], crc(b[:28]))
	return b
}
