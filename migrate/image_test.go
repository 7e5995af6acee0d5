package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testStream is a stream like QEMU's: runs of near-empty page records,
// text and random bytes, deterministic.
func testStream(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, n)
	words := []string{"kernel ", "memory ", "page ", "vmledger ", "qemu ", "\n", "0x", "struct "}
	for len(b) < n {
		switch rng.IntN(3) {
		case 0:
			b = append(b, make([]byte, rng.IntN(9000))...)
		case 1:
			for k := rng.IntN(3000); k > 0; k-- {
				b = append(b, words[rng.IntN(len(words))]...)
			}
		default:
			r := make([]byte, rng.IntN(6000))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b = append(b, r...)
		}
	}
	return b[:n]
}

// memFile is an in-memory File.
type memFile struct {
	b     []byte
	syncs int
}

func (m *memFile) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }
func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if int(off)+len(p) > len(m.b) {
		return 0, errors.New("write past the end")
	}
	return copy(m.b[off:], p), nil
}
func (m *memFile) Sync() error { m.syncs++; return nil }

// writeImage writes stream through a Writer in uneven pieces.
func writeImage(t testing.TB, config, stream []byte, o Options) []byte {
	t.Helper()
	var f memFile
	w, err := NewWriter(&f, config, o)
	if err != nil {
		t.Fatal(err)
	}
	for p := stream; len(p) > 0; {
		k := min(len(p), 1+len(p)%77777)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return f.b
}

// checkers are the two whole-image checks: each test of damage runs both.
var checkers = map[string]func(context.Context, io.Reader) (Summary, error){"Verify": Verify, "Scan": Scan}

var testConfig = []byte(`{"name":"demo","memory_mib":16,"clock":{"offset":"variable","adjustment":86400}}`)

// TestRoundTrip: what goes in comes out, for every compression and for
// streams of zero bytes, one byte, exactly a chunk and many chunks.
func TestRoundTrip(t *testing.T) {
	for _, c := range []Compression{None, Zstd, Snappy} {
		for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", c, n), func(t *testing.T) {
				stream := testStream(n, uint64(n))
				img := writeImage(t, testConfig, stream, Options{Compression: c, WasRunning: true, ChunkSize: 64 << 10, Workers: 3})
				rd, err := NewReader(bytes.NewReader(img))
				if err != nil {
					t.Fatal(err)
				}
				defer rd.Close()
				h := rd.Header()
				if !h.WasRunning || h.Compression != c || !bytes.Equal(rd.Config(), testConfig) {
					t.Errorf("header %+v config %q", h, rd.Config())
				}
				got, err := io.ReadAll(rd)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, stream) {
					t.Fatalf("stream differs: got %d bytes, want %d", len(got), len(stream))
				}
				if c != None && n >= 1<<20 && len(img) > len(stream)*9/10 {
					t.Errorf("%s image of %d bytes for a %d-byte compressible stream", c, len(img), n)
				}
			})
		}
	}
}

// TestPartialMagicUntilCommit: before Commit the image carries the partial
// magic and is refused as incomplete; Commit syncs before and after the
// final magic.
func TestPartialMagicUntilCommit(t *testing.T) {
	var f memFile
	w, err := NewWriter(&f, testConfig, Options{Compression: Zstd, ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testStream(100000, 1))
	w.mu.Lock() // the pipeline is still writing: look at a snapshot
	snap := append([]byte(nil), f.b...)
	w.mu.Unlock()
	_, err = Verify(context.Background(), bytes.NewReader(snap))
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Verify before Commit = %v, want ErrIncomplete", err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if f.syncs != 2 {
		t.Errorf("Commit synced %d times, want 2 (before and after the final magic)", f.syncs)
	}
	if _, err := Verify(context.Background(), bytes.NewReader(f.b)); err != nil {
		t.Fatalf("Verify after Commit: %v", err)
	}
	// The same bytes with the partial magic put back: refused.
	torn := append([]byte(nil), f.b...)
	copy(torn, magicPartial[:])
	if _, err := Verify(context.Background(), bytes.NewReader(torn)); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("partial magic: %v", err)
	}
}

// TestTruncated: an image cut at any point is refused, with the part and
// offset where it ends.
func TestTruncated(t *testing.T) {
	stream := testStream(300000, 7)
	img := writeImage(t, testConfig, stream, Options{Compression: Zstd, ChunkSize: 16 << 10})
	cuts := []int{0, 1, 7, 8, headerSize - 1, headerSize, headerSize + 5, headerSize + len(testConfig),
		headerSize + len(testConfig) + 3, headerSize + len(testConfig) + chunkHeaderSize,
		len(img) - endRecordSize, len(img) - endRecordSize + 4, len(img) - 1}
	for i := 1; i < 200; i++ { // and many points in between
		cuts = append(cuts, len(img)*i/200)
	}
	for _, n := range cuts {
		for name, check := range checkers {
			_, err := check(context.Background(), bytes.NewReader(img[:n]))
			if err == nil {
				t.Fatalf("image cut at %d of %d bytes passed %s", n, len(img), name)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s, cut at %d: %v is not a FormatError wrapping ErrCorrupt", name, n, err)
			}
			if n == len(img)-endRecordSize && !strings.Contains(err.Error(), "end marker") {
				t.Errorf("%s, cut before the end marker: %v", name, err)
			}
			if n > headerSize+len(testConfig) && fe.Offset < int64(headerSize+len(testConfig)) {
				t.Errorf("%s, cut at %d reported at offset %d (in the header or config)", name, n, fe.Offset)
			}
		}
	}
	_, err := Verify(context.Background(), bytes.NewReader(img[:len(img)-endRecordSize]))
	t.Logf("cut before the end marker: %v", err)
	_, err = Verify(context.Background(), bytes.NewReader(img[:len(img)/2]))
	t.Logf("cut in half: %v", err)
}

// TestFlippedBytes: one flipped bit anywhere in header, config, chunk
// headers, payloads or the end marker is caught, and the error names the
// part it is in.
func TestFlippedBytes(t *testing.T) {
	stream := testStream(200000, 3)
	for _, c := range []Compression{None, Zstd, Snappy} {
		t.Run(c.String(), func(t *testing.T) {
			img := writeImage(t, testConfig, stream, Options{Compression: c, ChunkSize: 32 << 10})
			cfgEnd := headerSize + len(testConfig)
			// Every byte of the header and config, then ever sparser.
			next := func(off int) int {
				if off < cfgEnd {
					return off + 1
				}
				return off + 1 + (off-cfgEnd)/50
			}
			for off := 0; off < len(img); off = next(off) {
				bad := append([]byte(nil), img...)
				bad[off] ^= 0x10
				for name, check := range checkers {
					_, err := check(context.Background(), bytes.NewReader(bad))
					if err == nil {
						t.Fatalf("flipped bit at offset %d not caught by %s", off, name)
					}
					want := "chunk"
					switch {
					case off < headerSize:
						want = "header"
					case off < cfgEnd:
						want = "config"
					case off >= len(img)-endRecordSize:
						want = "end marker"
					}
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s, flip at %d: %v, want it to name the %s", name, off, err, want)
					}
				}
			}
		})
	}
}

// TestHostileImages: crafted images are refused with a bounded error,
// never a huge allocation or a panic.
func TestHostileImages(t *testing.T) {
	good := writeImage(t, testConfig, testStream(50000, 9), Options{Compression: Snappy, ChunkSize: 16 << 10})
	hdr := func(edit func(h *Header)) []byte {
		h, err := decodeHeader(good[:headerSize])
		if err != nil {
			t.Fatal(err)
		}
		edit(&h)
		return append(encodeHeader(h, magicFinal), good[headerSize:]...)
	}
	cfgEnd := headerSize + len(testConfig)
	chunk := func(flag, rawLen, storedLen uint32) []byte {
		b := append([]byte(nil), good[:cfgEnd]...)
		payload := make([]byte, min(storedLen, 100))
		return append(append(b, encodeChunkHeader(flag, int(rawLen), int(storedLen), payload)...), payload...)
	}
	tests := []struct {
		name string
		img  []byte
		want string
	}{
		{"not an image", []byte("#!/bin/sh\necho hello, this is not an image at all, not one bit of it\n"), "magic"},
		{"empty", nil, "image ends here"},
		{"version 2", hdr(func(h *Header) { h.Version = 2 }), "version 2"},
		{"huge config", hdr(func(h *Header) { h.ConfigLen = 1 << 40 }), "config length"},
		{"huge chunks", hdr(func(h *Header) { h.ChunkSize = 1 << 30 }), "chunk size"},
		{"unknown codec", hdr(func(h *Header) { h.Compression = 9 }), "compression 9"},
		{"unknown flag", chunk(7, 10, 10), "flag 7"},
		{"raw over chunk size", chunk(chunkStored, 1<<30, 1<<30), "raw length"},
		{"stored length mismatch", chunk(chunkStored, 100, 50), "stored chunk"},
		{"compressed not smaller", chunk(chunkCompressed, 100, 100), "compressed length"},
		{"trailing data", append(append([]byte(nil), good...), 0), "after the end marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, check := range checkers {
				_, err := check(context.Background(), bytes.NewReader(tt.img))
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s = %v, want an error containing %q", name, err, tt.want)
				}
			}
		})
	}
}

// TestCreateRefusesExistingAndAbortRemoves: Create never replaces a file;
// Abort leaves nothing behind; a committed image survives Abort.
func TestCreateRefusesExistingAndAbortRemoves(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	os.WriteFile(path, []byte("keep"), 0o600)
	if _, err := Create(path, testConfig, Options{}); err == nil {
		t.Fatal("Create replaced an existing file")
	}
	os.Remove(path)
	fw, err := Create(path, testConfig, Options{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(testStream(10000, 2))
	fw.Abort()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("aborted image still there: %v", err)
	}
	fw, err = Create(path, testConfig, Options{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(testStream(10000, 2))
	if _, err := fw.Commit(); err != nil {
		t.Fatal(err)
	}
	fw.Abort()
	if _, err := VerifyFile(context.Background(), path); err != nil {
		t.Fatalf("committed image: %v", err)
	}
}

// failFile fails every write after the first limit bytes (a full disk).
type failFile struct {
	memFile
	limit int
}

func (f *failFile) Write(p []byte) (int, error) {
	if len(f.b)+len(p) > f.limit {
		return 0, fmt.Errorf("write: %w", errNoSpace)
	}
	return f.memFile.Write(p)
}

var errNoSpace = errors.New("no space left on device")

// TestWriterDiskFull: a failing file surfaces through Write or Commit, and
// the image never gets the final magic.
func TestWriterDiskFull(t *testing.T) {
	f := &failFile{limit: 50000}
	w, err := NewWriter(f, testConfig, Options{Compression: None, ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	stream := testStream(400000, 4)
	var werr error
	for p := stream; len(p) > 0 && werr == nil; p = p[min(len(p), 1000):] {
		_, werr = w.Write(p[:min(len(p), 1000)])
	}
	_, cerr := w.Commit()
	if !errors.Is(werr, errNoSpace) && !errors.Is(cerr, errNoSpace) {
		t.Fatalf("Write = %v, Commit = %v; want the disk's error", werr, cerr)
	}
	if bytes.HasPrefix(f.b, magicFinal[:]) {
		t.Fatal("a failed image got the final magic")
	}
}
