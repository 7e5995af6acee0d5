package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/migrate"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// TestSaveRestoreMemoryExact: guest RAM filled with the known page mix
// through the memory file, saved through the agent's pipeline (pipe from
// QEMU -> migrate.Writer -> image), restored into a fresh QEMU whose RAM
// path held a stale file of garbage: the restored RAM file is
// byte-identical to the saved one, garbage included nowhere (issue 10,
// acceptance b, at the library level).
func TestSaveRestoreMemoryExact(t *testing.T) {
	for _, c := range []migrate.Compression{migrate.Zstd, migrate.Snappy} {
		t.Run(c.String(), func(t *testing.T) { testSaveRestoreMemory(t, c) })
	}
}

func testSaveRestoreMemory(t *testing.T, comp migrate.Compression) {
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	spec.Config.MemoryMiB = 64
	spec.Paused = true // prelaunch: no guest instruction touches the mix
	src := startTest(t, d, spec)
	const seed = 20300101
	counts, err := pagemix.Default.FillFile(src.Paths().RAM, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %s", counts)
	config, err := json.Marshal(spec.Config)
	if err != nil {
		t.Fatal(err)
	}

	image := filepath.Join(t.TempDir(), "guest.save")
	st, err := migrate.Save(ctxFor(t, 2*time.Minute), src, image, config, migrate.Options{Compression: comp})
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	t.Logf("saved %d stream bytes in %d chunks into %d image bytes", st.RawBytes, st.Chunks, st.ImageBytes)
	saved, err := os.ReadFile(src.Paths().RAM)
	if err != nil {
		t.Fatal(err)
	}
	if err := pagemix.Default.Verify(saved, seed); err != nil {
		t.Fatalf("source RAM changed during the save: %v", err)
	}
	killAndDetach(t, src)
	waitDone(t, src, 10*time.Second)

	// A stale RAM file of garbage where the destination's will be.
	ramPath := d.Paths(spec.Config.UUID).RAM
	if err := os.WriteFile(ramPath, bytes.Repeat([]byte{0xa5}, len(saved)), 0o600); err != nil {
		t.Fatal(err)
	}
	var dst *Guest
	sum, err := migrate.Restore(ctxFor(t, 2*time.Minute), image, func(ctx context.Context, s migrate.Summary) (migrate.Target, error) {
		if !bytes.Equal(s.Config, config) {
			t.Errorf("image config %s, saved %s", s.Config, config)
		}
		g, err := d.StartIncoming(ctx, spec)
		if err == nil {
			dst = g
			t.Cleanup(func() { killAndDetach(t, g) })
		}
		return g, err
	})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if sum.StreamBytes != st.RawBytes {
		t.Errorf("restored %d stream bytes, saved %d", sum.StreamBytes, st.RawBytes)
	}
	status, err := dst.Status(ctxFor(t, 10*time.Second))
	// QEMU carries the source's run state in the stream: a guest saved
	// before it ever ran comes back in prelaunch.
	if err != nil || status.Running || (status.Status != "paused" && status.Status != "prelaunch") {
		t.Fatalf("restored guest: %+v, %v; want paused or prelaunch", status, err)
	}
	restored, err := os.ReadFile(dst.Paths().RAM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(restored, saved) {
		t.Fatalf("restored RAM differs from the saved RAM: %v", pagemix.Default.Verify(restored, seed))
	}
	if bytes.Contains(restored, bytes.Repeat([]byte{0xa5}, 64)) {
		t.Fatal("the stale file's garbage shows in the restored RAM")
	}
}

// TestRestoreCraftedPayloadNeverRuns: an image whose last compressed
// payload was changed and given a valid CRC again (what only a crafted
// image or a faulty writer holds) passes the check before start (Scan), so
// the incoming QEMU is started; the restore then fails on the stream's
// XXH64 at the end marker, or on the expansion, after QEMU got the bytes,
// and QEMU is left paused, never running, for the caller to kill
// (docs/migrate.md, "Reading and verifying").
func TestRestoreCraftedPayloadNeverRuns(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	spec.Config.MemoryMiB = 32
	spec.Paused = true
	src := startTest(t, d, spec)
	if _, err := pagemix.Default.FillFile(src.Paths().RAM, 7); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "guest.save")
	if _, err := migrate.Save(ctxFor(t, 2*time.Minute), src, image, []byte(`{}`), migrate.Options{Compression: migrate.Snappy}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	killAndDetach(t, src)
	waitDone(t, src, 10*time.Second)

	img, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	last := -1 // offset of the last compressed chunk record
	off := 64 + int(binary.LittleEndian.Uint64(img[24:]))
	for binary.LittleEndian.Uint32(img[off:]) != 3 { // 3: the end marker
		if binary.LittleEndian.Uint32(img[off:]) == 1 {
			last = off
		}
		off += 16 + int(binary.LittleEndian.Uint32(img[off+8:]))
	}
	if last < 0 {
		t.Fatal("no compressed chunk in the image")
	}
	payload := img[last+16 : last+16+int(binary.LittleEndian.Uint32(img[last+8:]))]
	payload[len(payload)*3/4] ^= 0x5a
	binary.LittleEndian.PutUint32(img[last+12:], crc32.Update(crc32.Checksum(img[last:last+12], castagnoli), castagnoli, payload))
	if err := os.WriteFile(image, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.ScanFile(context.Background(), image); err != nil {
		t.Fatalf("Scan refused the crafted image (the test then shows nothing): %v", err)
	}

	var dst *Guest
	_, err = migrate.Restore(ctxFor(t, 2*time.Minute), image, func(ctx context.Context, s migrate.Summary) (migrate.Target, error) {
		g, err := d.StartIncoming(ctx, spec)
		if err == nil {
			dst = g
			t.Cleanup(func() { killAndDetach(t, g) })
		}
		return g, err
	})
	if err == nil {
		t.Fatal("Restore of a crafted image succeeded")
	}
	t.Logf("Restore: %v", err)
	if !errors.Is(err, migrate.ErrCorrupt) {
		t.Errorf("Restore = %v, want the image's damage (ErrCorrupt)", err)
	}
	if dst == nil {
		t.Fatal("the destination was not started: Scan should have passed")
	}
	status, err := dst.Status(ctxFor(t, 10*time.Second))
	if err == nil && status.Running {
		t.Fatalf("the restored guest runs after a failed restore: %+v", status)
	}
	t.Logf("destination after the failed restore: %+v, %v", status, err)
}
