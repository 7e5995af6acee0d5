package migrate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// FuzzReader: any input is either a valid image whose stream reads back
// consistently, or refused with an error; never a panic, a hang or an
// allocation beyond the format's bounds. Scan, on the same input, never
// panics either, and accepts every image Verify accepts.
func FuzzReader(f *testing.F) {
	for _, c := range []Compression{None, Zstd, Snappy} {
		f.Add(writeImage(f, testConfig, testStream(20000, uint64(c)), Options{Compression: c, ChunkSize: 4096}))
	}
	f.Add([]byte{})
	f.Add(magicFinal[:])
	f.Fuzz(func(t *testing.T, img []byte) {
		scanned, scanErr := Scan(context.Background(), bytes.NewReader(img))
		var fe *FormatError
		if scanErr != nil && !errors.As(scanErr, &fe) {
			t.Fatalf("Scan error %v is not a *FormatError", scanErr)
		}
		s, err := Verify(context.Background(), bytes.NewReader(img))
		if err != nil {
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		// What Verify accepts, Scan accepts, with the same summary.
		if scanErr != nil || scanned.Header != s.Header || !bytes.Equal(scanned.Config, s.Config) ||
			scanned.StreamBytes != s.StreamBytes || scanned.Chunks != s.Chunks || scanned.StreamXXH64 != s.StreamXXH64 {
			t.Fatalf("Verify accepted (%+v) what Scan says %+v, %v", s, scanned, scanErr)
		}
		// Accepted: a second read gives the same stream.
		rd, err := NewReader(bytes.NewReader(img))
		if err != nil {
			t.Fatalf("verified image refused on the second read: %v", err)
		}
		defer rd.Close()
		n, err := io.Copy(io.Discard, rd)
		if err != nil || n != s.StreamBytes {
			t.Fatalf("second read: %d bytes, %v; Verify saw %d", n, err, s.StreamBytes)
		}
	})
}
