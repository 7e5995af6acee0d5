package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

// BenchmarkAgentSave1GiB: the 1 GiB guest with the 45/35/20 page mix
// (as BenchmarkSave1GiB in hypervisor/qemu, the library level beside
// QEMU's own save) saved and restored through a real agent and the CLI:
// the request, the job, the events, the progress, the verify pass and
// QEMU's start for the restore included. Run and image directories are
// on tmpfs, as for the library benchmark. Run both in one go:
//
//	go test -run '^$' -bench 'Save1GiB' -benchtime 1x -timeout 30m ./hypervisor/qemu/ ./cmd/vmledger/
func BenchmarkAgentSave1GiB(b *testing.B) {
	requireQEMU(b)
	shm, err := os.MkdirTemp("/dev/shm", "vab")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	run, images := filepath.Join(shm, "r"), filepath.Join(shm, "i")
	for _, d := range []string{run, images} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	a := startAgentEnv(b, b.TempDir(), nil, "--accel", "tcg", "--run-dir", run, "--allow-dir", images)
	a.runDir = run
	id := defineTinyMem(b, a, "bench", 1024)
	var save, restore time.Duration
	var size int64
	for i := 0; i < b.N; i++ {
		a.mustCLI("start", "bench", "--paused")
		if _, err := pagemix.Default.FillFile(ramPath(a, id), 1); err != nil {
			b.Fatal(err)
		}
		img := filepath.Join(images, "bench.save")
		t0 := time.Now()
		a.mustCLI("save", "bench", img, "--no-progress")
		save += time.Since(t0)
		fi, err := os.Stat(img)
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
		t0 = time.Now()
		a.mustCLI("restore", img, "--paused", "--no-progress")
		restore += time.Since(t0)
		if err := pagemix.Default.VerifyFile(ramPath(a, id), 1); err != nil {
			b.Fatal(err)
		}
		a.mustCLI("destroy", "bench")
		os.Remove(img)
	}
	b.ReportMetric(save.Seconds()/float64(b.N), "save-s")
	b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s")
	b.ReportMetric(float64(size)/1e6, "image-MB")
}
