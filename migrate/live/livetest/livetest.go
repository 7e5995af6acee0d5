// Package livetest is the reference live migration for benchmarks: two
// plain QEMUs (no driver, no agent) migrated over loopback TCP, driven
// with the bare QMP client, so that vmledger's migrations (migrate/live's
// runner, the agents' migrate verb) are timed side by side with it.
package livetest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qemu"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Fill writes 8 MiB of non-zero bytes at the top of a 16 MiB RAM file,
// so the stream carries them (QEMU sends no zero pages).
func Fill(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>9 + 1)
	}
	if _, err := f.WriteAt(buf, 8<<20); err != nil {
		tb.Fatal(err)
	}
}

// Direct runs one migration of the tiny guest (img) with 16 MiB of RAM,
// 8 MiB of it filled: the source QEMU starts and is filled untimed; the
// returned wall time runs from the start of the destination's QEMU
// (-incoming tcp:) through migrate-set-parameters (bandwidth lifted),
// migrate, query-migrate every 10 ms until completed, the destination
// leaving inmigrate, cont, until the source's QEMU is gone. downtime is
// QEMU's own figure. dir must be short (unix socket paths).
func Direct(tb testing.TB, dir, img string) (wall, downtime time.Duration) {
	tb.Helper()
	src, srcMon := plainQEMU(tb, dir, "src", img, "")
	defer srcMon.Close()
	Fill(tb, filepath.Join(dir, "src.ram"))
	port := strconv.Itoa(freePort(tb))
	t0 := time.Now()
	dst, dstMon := plainQEMU(tb, dir, "dst", img, "tcp:127.0.0.1:"+port)
	defer func() { dstMon.Close(); _ = dst.Process.Kill(); _ = dst.Wait() }()
	ctx := context.Background()
	must(tb, srcMon.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": qmp.UnlimitedBandwidth}, nil))
	must(tb, srcMon.Migrate(ctx, "tcp:127.0.0.1:"+port))
	var info struct {
		Status   string `json:"status"`
		Downtime int64  `json:"downtime"`
	}
	for info.Status != "completed" {
		time.Sleep(10 * time.Millisecond)
		must(tb, srcMon.Execute(ctx, "query-migrate", nil, &info))
		if info.Status == "failed" {
			tb.Fatal("migration failed")
		}
	}
	for {
		var st struct {
			Status string `json:"status"`
		}
		must(tb, dstMon.Execute(ctx, "query-status", nil, &st))
		if st.Status != "inmigrate" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(tb, dstMon.Execute(ctx, "cont", nil, nil))
	_ = src.Process.Kill()
	_ = src.Wait()
	return time.Since(t0), time.Duration(info.Downtime) * time.Millisecond
}

func must(tb testing.TB, err error) {
	if err != nil {
		tb.Helper()
		tb.Fatal(err)
	}
}

// plainQEMU starts the tiny guest in a QEMU of its own (no driver), its
// RAM in dir/<name>.ram like the driver's, and connects to its QMP.
func plainQEMU(tb testing.TB, dir, name, img, incoming string) (*exec.Cmd, *qmp.Client) {
	sock := filepath.Join(dir, name+".qmp")
	ram := filepath.Join(dir, name+".ram")
	os.Remove(sock)
	os.Remove(ram)
	args := []string{"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc,accel=tcg,memory-backend=ram0",
		"-object", "memory-backend-file,id=ram0,size=16M,mem-path=" + ram + ",share=on", "-m", "16M",
		"-drive", "file=" + img + ",format=raw,if=ide", "-qmp", "unix:" + sock + ",server=on,wait=off"}
	if incoming != "" {
		args = append(args, "-incoming", incoming)
	}
	cmd := exec.Command(qemu.DefaultBinary, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // after a Fatal too; a no-op once reaped
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := qmp.Dial(context.Background(), "unix", sock)
		if err == nil {
			return cmd, c
		}
		if time.Now().After(deadline) {
			tb.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
