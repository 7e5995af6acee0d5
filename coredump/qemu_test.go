package coredump_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qemu"
)

// requireTool skips without the program, except under CI=true where a
// missing tool is a broken runner.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// testGuest is a paused tiny guest whose RAM file holds the test mix.
type testGuest struct {
	g   *qemu.Guest
	ram *os.File
	m   coredump.MemoryMap
}

// startFilled boots the tiny guest under TCG on machine with mib MiB of
// RAM in a memory-backend-file, pauses it, and fills the pages [from, to)
// of the RAM file with the mix (nil fill: all of it).
func startFilled(t testing.TB, machine string, mib uint64, vcpus uint32, fill [][2]uint64) *testGuest {
	t.Helper()
	requireTool(t, qemu.DefaultBinary)
	run, err := os.MkdirTemp("", "cd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	d, err := qemu.New(qemu.Options{RunDir: run, Accel: qemu.AccelTCG, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	cfg := domains.Config{Name: "cd" + id.String()[:8], UUID: id, MemoryMiB: mib, VCPUs: vcpus, Machine: machine,
		Clock: domains.Clock{Offset: domains.OffsetUTC},
		Disks: []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide", Boot: true}}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := d.StartGuest(ctx, domains.StartSpec{Config: cfg})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer kcancel()
		g.Kill(kctx)
		g.Detach()
	})
	time.Sleep(300 * time.Millisecond) // let the vCPUs leave the reset vector
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	ram, err := os.OpenFile(g.Paths().RAM, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	if fill == nil {
		fill = [][2]uint64{{0, mib << 20 / coredump.PageSize}}
	}
	for _, f := range fill {
		fillFile(t, ram, f[0], f[1])
	}
	m, err := coredump.X86Map(machine, mib<<20)
	if err != nil {
		t.Fatal(err)
	}
	return &testGuest{g: g, ram: ram, m: m}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ramSHA hashes the RAM file's bytes behind m, in map order.
func ramSHA(t testing.TB, ram *os.File, m coredump.MemoryMap) string {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for _, r := range m {
		for off := uint64(0); off < r.Size; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), r.Size-off)
			if _, err := ram.ReadAt(buf[:n], int64(r.Offset+off)); err != nil {
				t.Fatal(err)
			}
			h.Write(buf[:n])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func shaHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// libkdumpfileSHA has python3-libkdumpfile read m's ranges from path.
func libkdumpfileSHA(t testing.TB, path string, read, holes []coredump.Extent) string {
	t.Helper()
	requireTool(t, "/usr/bin/python3")
	var rs, hs []string
	for _, r := range read {
		rs = append(rs, fmt.Sprintf("%#x:%#x", r.Addr, r.Size))
	}
	for _, h := range holes {
		// Not the hole's last page: libkdumpfile 0.5.1 reads the page below
		// 4 GiB from an ELF core that has nothing there (its quirk, with our
		// files and others alike).
		hs = append(hs, fmt.Sprintf("%#x", h.Addr), fmt.Sprintf("%#x", h.Addr+h.Size/2))
	}
	out, err := exec.Command("/usr/bin/python3", "testdata/kdumpfile_sha.py", path, strings.Join(rs, ","), strings.Join(hs, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("libkdumpfile on %s: %v\n%s", path, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("libkdumpfile on %s: %q", path, out)
	}
	return f[1]
}

// TestQEMUGuestDumps dumps a paused pc guest (2 vCPUs, 64 MiB filled with
// the page mix) in every format and checks each against the RAM file,
// python3-libkdumpfile, makedumpfile -R, readelf and gdb; then has QEMU
// write its own elf and kdump-zlib dumps and checks ours agree on every
// RAM page and on the registers.
func TestQEMUGuestDumps(t *testing.T) {
	const mib = 64
	tg := startFilled(t, "pc", mib, 2, nil)
	ctx := ctxT(t, 5*time.Minute)
	cpus, err := tg.g.CPUStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) != 2 || cpus[0].Index != 0 || cpus[1].Index != 1 || cpus[0].CR[0]&1 != 0 && cpus[0].CS.Limit == 0 {
		t.Fatalf("CPU states: %+v", cpus)
	}
	dir := t.TempDir()
	want := ramSHA(t, tg.ram, tg.m)
	ours := map[string]*coredump.File{}
	parent := t
	for _, c := range allFormats {
		name := string(c.f)
		if c.flat {
			name += ".flat"
		}
		t.Run(name, func(t *testing.T) {
			path, st := writeDump(t, dir, tg.ram, tg.m, c.f, c.flat, coredump.Options{CPUs: cpus})
			d, err := coredump.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parent.Cleanup(func() { d.Close() })
			t.Logf("%s: %d bytes, %d pages, %d zero", name, st.Bytes, st.Pages, st.ZeroPages)
			checkAgainstRAM(t, d, tg.ram, tg.m)
			checkCPUNotes(t, d, cpus)
			ours[name] = d
			switch {
			case c.flat:
				requireTool(t, "makedumpfile")
				out := path + ".R"
				in, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				cmd := exec.Command("makedumpfile", "-R", out)
				cmd.Stdin = in
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("makedumpfile -R: %v\n%s", err, b)
				}
				r, err := coredump.OpenFile(out)
				if err != nil {
					t.Fatalf("makedumpfile -R output: %v", err)
				}
				defer r.Close()
				if r.Flattened || r.Format != "kdump" {
					t.Errorf("makedumpfile -R output: format %s flattened %v", r.Format, r.Flattened)
				}
				checkAgainstRAM(t, r, tg.ram, tg.m)
				if got := libkdumpfileSHA(t, out, tg.m.Extents(), coredump.Holes(tg.m.Extents())); got != want {
					t.Errorf("libkdumpfile reads makedumpfile -R output as %s, RAM is %s", got, want)
				}
			default:
				if got := libkdumpfileSHA(t, path, tg.m.Extents(), coredump.Holes(tg.m.Extents())); got != want {
					t.Errorf("libkdumpfile reads %s as %s, RAM is %s", name, got, want)
				}
			}
			if c.f == coredump.FormatELF {
				checkELFTools(t, path, tg.m, len(cpus))
			}
		})
	}

	for _, qf := range []string{"elf", "kdump-zlib"} {
		t.Run("qemu-"+qf, func(t *testing.T) {
			path := filepath.Join(dir, "qemu."+qf)
			if err := tg.g.Monitor().DumpGuestMemory(ctx, path, qf); err != nil {
				t.Fatal(err)
			}
			q, err := coredump.OpenFile(path)
			if err != nil {
				t.Fatalf("our reader on QEMU's %s: %v", qf, err)
			}
			defer q.Close()
			mine := ours[string(coredump.FormatKdumpZstd)]
			if mine == nil {
				t.Fatal("no kdump-zstd dump of ours to compare with")
			}
			compareDumps(t, q, mine, tg.m)
			checkQEMUNotes(t, q, cpus)
		})
	}
}

// firmwareWindow is where QEMU's view of low memory differs from the RAM
// file: the legacy VGA window and the BIOS shadow (0xa0000-0xfffff), and
// the BIOS ROM mapped just below 4 GiB.
func firmware(addr uint64) bool {
	return addr >= 0xa0000 && addr < 0x100000 || addr >= 0xfffc0000 && addr < 1<<32
}

// compareDumps checks every page qemu's dump and ours both hold is equal,
// and that they differ in coverage only in the firmware windows.
func compareDumps(t testing.TB, qemuDump, ours *coredump.File, m coredump.MemoryMap) {
	t.Helper()
	a, b := make([]byte, coredump.PageSize), make([]byte, coredump.PageSize)
	compared := 0
	for _, e := range qemuDump.Extents {
		for p := e.Addr; p < e.End(); p += coredump.PageSize {
			if _, err := qemuDump.ReadAt(a, int64(p)); err != nil {
				t.Fatalf("QEMU's dump at %#x: %v", p, err)
			}
			_, err := ours.ReadAt(b, int64(p))
			if err != nil {
				if !firmware(p) {
					t.Fatalf("QEMU's dump has %#x, ours: %v", p, err)
				}
				continue
			}
			if !bytes.Equal(a, b) {
				if firmware(p) {
					continue // shadowed BIOS: QEMU reads the ROM, the file holds RAM
				}
				t.Fatalf("page %#x: QEMU's dump and ours differ", p)
			}
			compared++
		}
	}
	for _, e := range ours.Extents {
		for p := e.Addr; p < e.End(); p += coredump.PageSize {
			if _, err := qemuDump.ReadAt(a[:1], int64(p)); err != nil && !firmware(p) {
				t.Fatalf("our dump has %#x, QEMU's: %v", p, err)
			}
		}
	}
	if min := int(m.Pages()) - 0x60; compared < min {
		t.Errorf("compared %d pages, want at least %d", compared, min)
	}
	t.Logf("%d pages equal", compared)
}

// checkCPUNotes checks our NT_PRSTATUS and QEMU notes carry the registers.
func checkCPUNotes(t testing.TB, d *coredump.File, cpus []coredump.CPUState) {
	t.Helper()
	var prs []coredump.PRStatusInfo
	for _, n := range d.Notes {
		if n.Name == coredump.NameCore && n.Type == coredump.NTPRStatus {
			p, err := coredump.ParsePRStatus(n.Desc)
			if err != nil {
				t.Fatal(err)
			}
			prs = append(prs, p)
		}
	}
	if len(prs) != len(cpus) {
		t.Fatalf("%d NT_PRSTATUS notes, %d vCPUs", len(prs), len(cpus))
	}
	for i, p := range prs {
		if p.PID != uint32(cpus[i].Index+1) || p.RIP != cpus[i].RIP || p.RSP != cpus[i].RSP {
			t.Errorf("NT_PRSTATUS %d: %+v, vCPU %d has rip %#x rsp %#x", i, p, cpus[i].Index, cpus[i].RIP, cpus[i].RSP)
		}
	}
}

// checkQEMUNotes compares QEMU's own "QEMU" CPU notes with the ones we
// build from the monitor's registers: registers, segments, CRs. The low
// byte of each segment's flags is left out: "info registers" prints
// flags & 0x00ffff00, and QEMU's segment cache keeps other bits there
// (0x0f has been seen in a real-mode CS).
func checkQEMUNotes(t testing.TB, d *coredump.File, cpus []coredump.CPUState) {
	t.Helper()
	const segs, segsEnd, crEnd = 8 + 18*8, 8 + 18*8 + 10*24, 8 + 18*8 + 10*24 + 5*8
	norm := func(b []byte) []byte {
		b = bytes.Clone(b[:crEnd])
		for at := segs; at < segsEnd; at += 24 {
			b[at+8] = 0 // flags bits 0-7
		}
		return b[8:]
	}
	i := 0
	for _, n := range d.Notes {
		if n.Name != coredump.NameQEMU {
			continue
		}
		if i >= len(cpus) {
			t.Fatalf("more QEMU notes than vCPUs")
		}
		mine := cpus[i].QEMUState().Desc
		if len(n.Desc) < crEnd || !bytes.Equal(norm(n.Desc), norm(mine)) {
			a, b := norm(n.Desc), norm(mine)
			var diff []string
			for k := range a {
				if a[k] != b[k] {
					diff = append(diff, fmt.Sprintf("@%d qemu %#x ours %#x", k+8, a[k], b[k]))
				}
			}
			t.Errorf("vCPU %d: QEMU's CPU note differs from the monitor's registers: %v", i, diff)
		}
		i++
	}
	if i != len(cpus) {
		t.Errorf("QEMU's dump has %d CPU notes, want %d", i, len(cpus))
	}
}

// checkELFTools runs readelf -a and gdb on an ELF core.
func checkELFTools(t testing.TB, path string, m coredump.MemoryMap, cpus int) {
	t.Helper()
	requireTool(t, "readelf")
	out, err := exec.Command("readelf", "-a", "-W", path).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("Warning")) || bytes.Contains(out, []byte("Error")) {
		t.Fatalf("readelf -a: %v\n%s", err, out)
	}
	if n := bytes.Count(out, []byte("NT_PRSTATUS")); n != cpus {
		t.Errorf("readelf shows %d NT_PRSTATUS notes, want %d", n, cpus)
	}
	if n := bytes.Count(out, []byte("  LOAD ")); n != len(m) {
		t.Errorf("readelf shows %d LOAD headers, want %d:\n%s", n, len(m), out)
	}
	requireTool(t, "gdb")
	out, err = exec.Command("gdb", "-nx", "-batch", "-ex", "info files", "-c", path).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	for i, r := range m {
		line := fmt.Sprintf("0x%016x - 0x%016x is load%d", r.Addr, r.End(), i+1)
		if !bytes.Contains(out, []byte(line)) {
			t.Errorf("gdb info files lacks %q:\n%s", line, out)
		}
	}
}
