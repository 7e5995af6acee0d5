package migrate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestWriterStoresRandomChunks: a chunk of random bytes is stored without
// trying the codec, and reads back; a chunk of the page mix, whose random
// pages sit among text pages, is still compressed.
func TestWriterStoresRandomChunks(t *testing.T) {
	random := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	mix := qemuLikeStream(16 << 20)
	for _, tt := range []struct {
		name       string
		stream     []byte
		wantStored bool
	}{
		{"random", random, true},
		{"page mix", mix, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for off := 0; off+DefaultChunkSize <= len(tt.stream); off += DefaultChunkSize {
				if got := incompressible(tt.stream[off : off+DefaultChunkSize]); got != tt.wantStored {
					t.Fatalf("chunk at %d: incompressible = %v, want %v", off, got, tt.wantStored)
				}
			}
			for _, c := range []Compression{Zstd, Snappy} {
				img := writeImage(t, testConfig, tt.stream, Options{Compression: c})
				stored, chunks := 0, 0
				for off := headerSize + len(testConfig); le.Uint32(img[off:]) != chunkEnd; chunks++ {
					if le.Uint32(img[off:]) == chunkStored {
						stored++
					}
					off += chunkHeaderSize + int(le.Uint32(img[off+8:]))
				}
				if tt.wantStored && stored != chunks || !tt.wantStored && stored != 0 {
					t.Errorf("%s: %d of %d chunks stored raw", c, stored, chunks)
				}
				rd, err := NewReader(bytes.NewReader(img))
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				if _, err := got.ReadFrom(rd); err != nil || !bytes.Equal(got.Bytes(), tt.stream) {
					t.Fatalf("%s: read back %d bytes, %v", c, got.Len(), err)
				}
				if _, err := Scan(context.Background(), bytes.NewReader(img)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestReadStreamFrom: reading the stream straight into the chunk buffers
// (what StreamOut does) makes the same image as Write, whatever the sizes
// of the reads; an error of the source is returned as it is.
func TestReadStreamFrom(t *testing.T) {
	stream := testStream(3<<20+12345, 7)
	for _, c := range []Compression{None, Zstd, Snappy} {
		want := writeImage(t, testConfig, stream, Options{Compression: c, ChunkSize: 256 << 10})
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(stream),
			"half":     iotest.HalfReader(bytes.NewReader(stream)),
			"one byte": iotest.OneByteReader(bytes.NewReader(stream[:300000])),
		} {
			var f memFile
			w, err := NewWriter(&f, testConfig, Options{Compression: c, ChunkSize: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			n, err := w.ReadStreamFrom(r)
			if err != nil {
				t.Fatalf("%s %s: %v", c, name, err)
			}
			if _, err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if name == "one byte" {
				if n != 300000 || !bytes.Equal(f.b, writeImage(t, testConfig, stream[:300000], Options{Compression: c, ChunkSize: 256 << 10})) {
					t.Errorf("%s %s: %d bytes, image differs from Write's", c, name, n)
				}
				continue
			}
			if n != int64(len(stream)) || !bytes.Equal(f.b, want) {
				t.Errorf("%s %s: %d bytes, image differs from Write's", c, name, n)
			}
		}
	}
	var f memFile
	w, err := NewWriter(&f, testConfig, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	boom := errors.New("boom")
	if _, err := w.ReadStreamFrom(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("source error: %v", err)
	}
}
