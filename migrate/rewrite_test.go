package migrate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestRewrite: the config and flag are replaced and the stream is kept;
// a damaged image is refused and left exactly as it was, with no
// leftover file.
func TestRewrite(t *testing.T) {
	stream := bytes.Repeat([]byte("some guest state "), 200000)
	for _, c := range []Compression{None, Zstd, Snappy} {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "g.save")
			img := writeImage(t, testConfig, stream, Options{Compression: c, WasRunning: true, ChunkSize: 64 << 10})
			if err := os.WriteFile(path, img, 0o600); err != nil {
				t.Fatal(err)
			}
			newCfg := []byte(`{"name":"demo","memory_mib":16}`)
			if _, err := Rewrite(path, newCfg, false); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rd, err := NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			h := rd.Header()
			if !bytes.Equal(rd.Config(), newCfg) || h.WasRunning || h.Compression != c || h.ChunkSize != 64<<10 || !bytes.Equal(got, stream) {
				t.Fatalf("rewritten image: header %+v config %q, stream equal %v", h, rd.Config(), bytes.Equal(got, stream))
			}

			// Damaged: the last chunk's byte flipped.
			bad := append([]byte(nil), img...)
			bad[len(bad)-40] ^= 0x10
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Rewrite(path, newCfg, false); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("rewrite of a damaged image: %v, want ErrCorrupt", err)
			}
			after, _ := os.ReadFile(path)
			ents, _ := os.ReadDir(dir)
			if !bytes.Equal(after, bad) || len(ents) != 1 {
				t.Fatalf("a refused rewrite changed the image (%v) or left files: %d entries", !bytes.Equal(after, bad), len(ents))
			}
		})
	}
}
