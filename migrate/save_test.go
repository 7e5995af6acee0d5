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

	"github.com/cespare/xxhash/v2"
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
// refused before the destination is started, by the default check (Scan)
// and by the full one.
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
			for _, o := range []RestoreOptions{{}, {FullVerify: true}} {
				_, err := RestoreWith(context.Background(), p, func(context.Context, Summary) (Target, error) {
					t.Errorf("%+v: destination started for a damaged image", o)
					return &fakeTarget{}, nil
				}, o)
				if err == nil {
					t.Fatalf("%+v: restore accepted a damaged image", o)
				}
				t.Logf("%s, %+v: %v", name, o, err)
			}
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

// TestRestoreChecksBeforeAndWhileStreaming: the check before start (Scan)
// refuses a payload whose own length field disagrees with its record even
// with a recomputed CRC; a payload re-checksummed after a change inside
// (only a crafted image or a faulty writer has one) passes Scan, starts the
// target and then fails the restore at the end marker (the stream's XXH64,
// checked before the Reader's last read returns), while
// RestoreOptions.FullVerify refuses it before start.
func TestRestoreChecksBeforeAndWhileStreaming(t *testing.T) {
	dir := t.TempDir()
	stream := testStream(300000, 11)
	img := writeImage(t, testConfig, stream, Options{Compression: Snappy, ChunkSize: 64 << 10})
	first := headerSize + len(testConfig)
	if le.Uint32(img[first:]) != chunkCompressed || le.Uint32(img[first+4:]) != 64<<10 {
		t.Fatal("the first chunk is not a compressed 64 KiB chunk")
	}
	// edit changes chunk 0's payload and gives it a valid CRC again.
	edit := func(change func(payload []byte)) string {
		b := append([]byte(nil), img...)
		payload := b[first+chunkHeaderSize : first+chunkHeaderSize+int(le.Uint32(b[first+8:]))]
		change(payload)
		copy(b[first:], encodeChunkHeader(chunkCompressed, 64<<10, len(payload), payload))
		p := filepath.Join(dir, fmt.Sprintf("crafted%d.save", len(os.Args)+rand.IntN(1<<30)))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Snappy's varint length: 64 KiB is 0x80 0x80 0x04; make it 32 KiB.
	short := edit(func(p []byte) { p[2] = 0x02 })
	inside := edit(func(p []byte) { p[len(p)/2] ^= 0x55 })

	type result struct {
		started bool
		err     error
	}
	restore := func(path string, o RestoreOptions) result {
		var r result
		_, r.err = RestoreWith(context.Background(), path, func(context.Context, Summary) (Target, error) {
			r.started = true
			return &fakeTarget{}, nil
		}, o)
		return r
	}
	for _, tt := range []struct {
		name        string
		path        string
		o           RestoreOptions
		wantStarted bool
		want        string
	}{
		{"length field, default", short, RestoreOptions{}, false, "snappy data expands to 32768 bytes, the chunk says 65536"},
		{"length field, full verify", short, RestoreOptions{FullVerify: true}, false, "the chunk says 65536"},
		{"inside payload, default", inside, RestoreOptions{}, true, "stream XXH64"},
		{"inside payload, full verify", inside, RestoreOptions{FullVerify: true}, false, "stream XXH64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := restore(tt.path, tt.o)
			if r.err == nil {
				t.Fatal("restore of a crafted image succeeded")
			}
			if !errors.Is(r.err, ErrCorrupt) || !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("restore = %v, want ErrCorrupt and %q", r.err, tt.want)
			}
			if r.started != tt.wantStarted {
				t.Errorf("started = %v, want %v", r.started, tt.wantStarted)
			}
			t.Logf("%v", r.err)
		})
	}
	if _, err := ScanFile(context.Background(), inside); err != nil {
		t.Errorf("Scan refused a payload with a valid CRC and length: %v (this test then shows nothing)", err)
	}
}

// TestScanMatchesVerify: on good images of every codec, Scan and Verify
// agree on everything Scan reports, and Scan's XXH64 (the end marker's) is
// the stream's.
func TestScanMatchesVerify(t *testing.T) {
	stream := testStream(1<<20+12345, 12)
	for _, c := range []Compression{None, Zstd, Snappy} {
		img := writeImage(t, testConfig, stream, Options{Compression: c, ChunkSize: 64 << 10})
		v, err := Verify(context.Background(), bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		s, err := Scan(context.Background(), bytes.NewReader(img))
		if err != nil {
			t.Fatalf("%s: Scan: %v", c, err)
		}
		if s.Header != v.Header || !bytes.Equal(s.Config, v.Config) || s.StreamBytes != v.StreamBytes ||
			s.Chunks != v.Chunks || s.StreamXXH64 != v.StreamXXH64 || s.StreamXXH64 != xxhash.Sum64(stream) {
			t.Errorf("%s: Scan %+v, Verify %+v", c, s, v)
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
