package migrate

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
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
