package qemu

import (
	"bytes"
	"context"
	"encoding/json"
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
