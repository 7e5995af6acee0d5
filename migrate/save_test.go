package migrate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fakeSource struct {
	stream []byte
	failAt int // fail after this many bytes; 0 never
}

func (s fakeSource) StreamOut(ctx context.Context, w io.Writer) (int64, error) {
	b := s.stream
	if s.failAt > 0 {
		b = b[:s.failAt]
	}
	n, err := w.Write(b)
	if err == nil && s.failAt > 0 {
		err = errors.New("qemu exited (signal: killed) during the migration")
	}
	return int64(n), err
}

type fakeTarget struct{ got bytes.Buffer }

func (t *fakeTarget) StreamIn(ctx context.Context, r io.Reader) (int64, error) {
	return io.Copy(&t.got, r)
}

// TestSaveRestore: Save then Restore hands the target the same stream and
// the start function the recorded config.
func TestSaveRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.save")
	stream := testStream(3<<20, 5)
	st, err := Save(context.Background(), fakeSource{stream: stream}, path, testConfig, Options{Compression: Zstd, WasRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.RawBytes != int64(len(stream)) {
		t.Errorf("stats %+v", st)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != st.ImageBytes {
		t.Errorf("image size %v, %v; stats say %d", fi.Size(), err, st.ImageBytes)
	}
	tgt := &fakeTarget{}
	var started Summary
	s, err := Restore(context.Background(), path, func(ctx context.Context, s Summary) (Target, error) {
		started = s
		return tgt, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(started.Config, testConfig) || !started.Header.WasRunning || s.StreamBytes != int64(len(stream)) {
		t.Errorf("start saw %+v", started.Header)
	}
	if !bytes.Equal(tgt.got.Bytes(), stream) {
		t.Fatal("the target did not get the saved stream")
	}
}

// TestRestoreVerifiesFirst: a damaged image (even only its last chunk) is
// refused before the destination is started.
func TestRestoreVerifiesFirst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.save")
	if _, err := Save(context.Background(), fakeSource{stream: testStream(1<<20, 6)}, path, testConfig, Options{Compression: Snappy}); err != nil {
		t.Fatal(err)
	}
	img, _ := os.ReadFile(path)
	cases := map[string][]byte{
		"last chunk flipped": func() []byte {
			b := append([]byte(nil), img...)
			b[len(b)-endRecordSize-10] ^= 1
			return b
		}(),
		"truncated":      img[:len(img)-1],
		"partial magic":  append(append([]byte(nil), magicPartial[:]...), img[8:]...),
		"config flipped": func() []byte { b := append([]byte(nil), img...); b[headerSize+2] ^= 4; return b }(),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			os.WriteFile(p, bad, 0o600)
			_, err := Restore(context.Background(), p, func(context.Context, Summary) (Target, error) {
				t.Error("destination started for a damaged image")
				return &fakeTarget{}, nil
			})
			if err == nil {
				t.Fatal("Restore accepted a damaged image")
			}
			t.Logf("%s: %v", name, err)
		})
	}
	if _, err := Restore(context.Background(), filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("Restore of a missing file succeeded")
	}
}

// TestSaveFailureLeavesNoImage: a source that dies mid-stream and a ctx
// that ends leave no file at the path.
func TestSaveFailureLeavesNoImage(t *testing.T) {
	dir := t.TempDir()
	stream := testStream(1<<20, 8)
	path := filepath.Join(dir, "a.save")
	if _, err := Save(context.Background(), fakeSource{stream: stream, failAt: 500000}, path, testConfig, Options{Compression: Zstd}); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Save = %v, want the source's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path2 := filepath.Join(dir, "b.save")
	if _, err := Save(ctx, fakeSource{stream: stream}, path2, testConfig, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a cancelled ctx = %v", err)
	}
	for _, p := range []string{path, path2} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after a failed save (%v)", p, err)
		}
	}
}

// TestVerifyHonoursContext: a cancelled verify stops with ctx's error, and
// a restore whose ctx ended never starts the destination.
func TestVerifyHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.save")
	if _, err := Save(context.Background(), fakeSource{stream: testStream(1<<20, 6)}, path, testConfig, Options{Compression: Zstd}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := VerifyFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyFile with a cancelled ctx = %v", err)
	}
	_, err := Restore(ctx, path, func(context.Context, Summary) (Target, error) {
		t.Error("destination started under a cancelled ctx")
		return &fakeTarget{}, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Restore with a cancelled ctx = %v", err)
	}
}
