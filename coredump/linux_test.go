package coredump_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/linuxguest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest/linuxguesttest"
	"github.com/vmledger/vmledger/hypervisor/qemu"
)

// TestMain removes the Linux guest built for this run.
func TestMain(m *testing.M) {
	code := m.Run()
	linuxguesttest.Cleanup()
	os.Exit(code)
}

// TestLinuxVMCOREINFO boots the Linux guest with QEMU's vmcoreinfo
// device, finds the kernel's VMCOREINFO note in its RAM, checks it equals
// the note QEMU's own ELF dump carries, writes our ELF and kdump files
// with it, and has crash --osrelease print the guest's kernel release
// from each.
func TestLinuxVMCOREINFO(t *testing.T) {
	requireTool(t, qemu.DefaultBinary)
	img := linuxguesttest.Image(t)
	run, err := os.MkdirTemp("", "cl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	d, err := qemu.New(qemu.Options{RunDir: run, Accel: qemu.AccelTCG, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	const mib = 256
	cfg := domains.Config{Name: "cl" + id.String()[:8], UUID: id, MemoryMiB: mib, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetUTC}, OS: img.OS(), Features: []string{domains.FeatureVMCOREINFO}}
	ctx := ctxT(t, 5*time.Minute)
	g, err := d.StartGuest(ctx, domains.StartSpec{Config: cfg, Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Kill(kctx)
		g.Detach()
	})
	con, err := qemu.OpenConsole(ctx, g.Console())
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	if err := g.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	con.SetReadDeadline(time.Now().Add(2 * time.Minute))
	sc := bufio.NewScanner(con)
	for ready := false; !ready; {
		if !sc.Scan() {
			t.Fatalf("console ended before %q: %v", linuxguest.ReadyPrefix, sc.Err())
		}
		ready = strings.HasPrefix(strings.TrimSpace(sc.Text()), linuxguest.ReadyPrefix)
	}
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}

	ram, err := os.Open(g.Paths().RAM)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	m, err := coredump.X86Map("pc", mib<<20)
	if err != nil {
		t.Fatal(err)
	}
	info, err := coredump.FindVMCoreInfo(ctx, ram, m)
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := coredump.VMCoreInfoValue(info, "OSRELEASE"); rel != img.Release {
		t.Fatalf("VMCOREINFO found in RAM names %q, the guest runs %s", rel, img.Release)
	}

	dir := t.TempDir()
	qpath := filepath.Join(dir, "qemu.elf")
	if err := g.Monitor().DumpGuestMemory(ctx, qpath, "elf"); err != nil {
		t.Fatal(err)
	}
	q, err := coredump.OpenFile(qpath)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if qi, ok := q.VMCoreInfo(); !ok || !bytes.Equal(qi, info) {
		t.Fatalf("QEMU's dump's VMCOREINFO (%v) differs from the one found in RAM:\n%.200q\n%.200q", ok, qi, info)
	}

	cpus, err := g.CPUStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	requireTool(t, "crash")
	for _, c := range []struct {
		f    coredump.Format
		flat bool
	}{{coredump.FormatELF, false}, {coredump.FormatKdumpZlib, false}, {coredump.FormatKdumpZstd, false}} {
		path, _ := writeDump(t, dir, ram, m, c.f, c.flat, coredump.Options{CPUs: cpus, VMCoreInfo: info})
		out, err := exec.Command("crash", "--osrelease", path).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != img.Release {
			t.Errorf("crash --osrelease %s: %v: %q, want %q", c.f, err, out, img.Release)
		}
		dd, err := coredump.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstRAM(t, dd, ram, m)
		dd.Close()
	}
}
