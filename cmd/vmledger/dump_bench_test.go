package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/migrate/pagemix"
)

// BenchmarkAgentDump1GiB: `vmledger dump` through a real agent and the
// CLI (request, job, events, pause and resume, the rename) of the paused
// 1 GiB tiny guest holding the save benchmark's mix, each of our formats
// beside QEMU's own (--via-qemu), in one run. Run and dump directories
// are on tmpfs. Library-level figures: BenchmarkDump1GiB in coredump.
//
//	go test -run '^$' -bench AgentDump1GiB -benchtime 1x -timeout 30m ./cmd/vmledger/
func BenchmarkAgentDump1GiB(b *testing.B) {
	requireQEMU(b)
	shm, err := os.MkdirTemp("/dev/shm", "vdb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	run, dumps := filepath.Join(shm, "r"), filepath.Join(shm, "d")
	for _, d := range []string{run, dumps} {
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	a := startAgentEnv(b, b.TempDir(), nil, "--accel", "tcg", "--run-dir", run, "--allow-dir", dumps)
	a.runDir = run
	id := defineTinyMem(b, a, "bench", 1024)
	a.mustCLI("start", "bench", "--paused")
	if _, err := pagemix.Default.FillFile(ramPath(a, id), 1); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, format, via string }{
		{"vmledger-elf", "elf", ""},
		{"vmledger-kdump-zlib", "kdump-zlib", ""},
		{"vmledger-kdump-snappy", "kdump-snappy", ""},
		{"vmledger-kdump-zstd", "kdump-zstd", ""},
		{"qemu-elf", "elf", "--via-qemu"},
		{"qemu-kdump-zlib", "kdump-zlib", "--via-qemu"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var size int64
			for i := 0; i < b.N; i++ {
				path := filepath.Join(dumps, tc.name)
				args := []string{"--nats-url", a.natsURL, "--host", a.host, "dump", "bench", path, "--format", tc.format, "--no-progress"}
				if tc.via != "" {
					args = append(args, tc.via)
				}
				// QEMU's kdump-zlib of 1 GiB takes about a minute here:
				// longer than runCLI allows.
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
				out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
				cancel()
				if err != nil {
					b.Fatalf("dump %s: %v\n%s", tc.name, err, out)
				}
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				size = fi.Size()
				os.Remove(path)
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/dump")
			b.ReportMetric(1024/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
			b.ReportMetric(float64(size)/(1<<20), "file-MiB")
		})
	}
}
