package migrate

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Rewrite replaces the config inside the image at path (and its
// was-running flag), as virsh save-image-define does. The stream is read
// and checked in full and written, with the same codec and chunk size,
// into a new image beside the old one under the partial magic; only once
// that image is committed does it replace the old one (rename, then the
// directory is synced). A failure at any point leaves the old image as it
// was, and at worst a partial file no reader accepts.
func Rewrite(path string, config []byte, wasRunning bool) (Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: rewrite: %w", err)
	}
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	defer rd.Close()
	h := rd.Header()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".rewrite")
	fw, err := Create(tmp, config, Options{Compression: h.Compression, WasRunning: wasRunning, ChunkSize: h.ChunkSize})
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	if _, err := io.Copy(fw, rd); err != nil {
		fw.Abort()
		return Stats{}, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	st, err := fw.Commit()
	if err != nil {
		return Stats{}, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return Stats{}, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return st, fmt.Errorf("migrate: rewrite %s: %w", path, err)
	}
	return st, nil
}
