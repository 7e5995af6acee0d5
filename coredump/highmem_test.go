package coredump_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
)

// TestQ35HighMemory dumps a q35 guest with 4.5 GiB of RAM: 2 GiB below
// the PCI hole, 2.5 GiB from 4 GiB. The RAM file is sparse; pages around
// both edges of the hole and at the ends hold the mix. Every page of our
// dumps equals the RAM file, the hole reads as a hole (in our reader and
// in libkdumpfile), QEMU's own kdump-zlib dump of the guest agrees page
// for page, and QEMU's monitor (xp) sees the guest-physical addresses
// where our map says they are.
func TestQ35HighMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes several GiB of dumps")
	}
	const mib = 4608
	const lowPages, edge = (2 << 30) / coredump.PageSize, 4096 // 16 MiB at each edge
	tg := startFilled(t, "q35", mib, 1, [][2]uint64{
		{0, edge}, {lowPages - edge, lowPages + edge}, {mib<<20/coredump.PageSize - edge, mib << 20 / coredump.PageSize}})
	want := coredump.MemoryMap{{Addr: 0, Size: 2 << 30, Offset: 0}, {Addr: 1 << 32, Size: 2560 << 20, Offset: 2 << 30}}
	if fmt.Sprint(tg.m) != fmt.Sprint(want) {
		t.Fatalf("X86Map(q35, 4.5 GiB) = %v, want %v", tg.m, want)
	}
	ctx := ctxT(t, 10*time.Minute)

	// QEMU's own view of guest-physical memory on both sides of the hole.
	for _, addr := range []uint64{0x7ffff000, 0x7ffffff8, 1 << 32, 1<<32 + 8} {
		out, err := tg.g.Monitor().HumanMonitorCommand(ctx, fmt.Sprintf("xp /1gx %#x", addr))
		if err != nil {
			t.Fatal(err)
		}
		_, v, ok := strings.Cut(strings.TrimSpace(out), ": ")
		got, perr := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		if !ok || perr != nil {
			t.Fatalf("xp %#x: %q", addr, out)
		}
		var b [8]byte
		r := tg.m[findMapRange(tg.m, addr)]
		if _, err := tg.ram.ReadAt(b[:], int64(r.Offset+addr-r.Addr)); err != nil {
			t.Fatal(err)
		}
		if exp := leUint64(b[:]); got != exp {
			t.Errorf("guest-physical %#x: QEMU reads %#x, the RAM file at our offset holds %#x", addr, got, exp)
		}
	}

	dir := t.TempDir()
	edges := []coredump.Extent{{Addr: 2<<30 - edge*coredump.PageSize, Size: edge * coredump.PageSize}, {Addr: 1 << 32, Size: edge * coredump.PageSize}}
	var ours *coredump.File
	for _, c := range []struct {
		f    coredump.Format
		flat bool
	}{{coredump.FormatELF, false}, {coredump.FormatKdumpZstd, false}, {coredump.FormatKdumpSnappy, true}} {
		path, st := writeDump(t, dir, tg.ram, tg.m, c.f, c.flat, coredump.Options{})
		t.Logf("%s flat=%v: %d bytes, %d zero pages, %v", c.f, c.flat, st.Bytes, st.ZeroPages, st.Duration)
		d, err := coredump.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		if h := d.Holes(); len(h) != 1 || h[0] != (coredump.Extent{Addr: 2 << 30, Size: 2 << 30}) {
			t.Errorf("%s: holes %+v, want [2 GiB, 4 GiB)", path, h)
		}
		checkAgainstRAM(t, d, tg.ram, tg.m)
		var b [16]byte
		n, err := d.ReadAt(b[:], 2<<30-8) // runs into the hole
		var he *coredump.HoleError
		if n != 8 || !errors.As(err, &he) || he.Addr != 2<<30 {
			t.Errorf("%s: read across the hole's start: n=%d err=%v", path, n, err)
		}
		if !c.flat {
			if got, exp := libkdumpfileSHA(t, path, edges, coredump.Holes(tg.m.Extents())), sha(t, d, edges); got != exp {
				t.Errorf("%s: libkdumpfile reads the edges of the hole as %s, we read %s", path, got, exp)
			}
		}
		if c.f == coredump.FormatKdumpZstd {
			ours = d
		}
	}

	qpath := dir + "/qemu.kdump-zlib"
	if err := tg.g.Monitor().DumpGuestMemory(ctx, qpath, "kdump-zlib"); err != nil {
		t.Fatal(err)
	}
	q, err := coredump.OpenFile(qpath)
	if err != nil {
		t.Fatalf("QEMU's kdump-zlib of the q35 guest: %v", err)
	}
	defer q.Close()
	compareDumps(t, q, ours, tg.m)
}

func findMapRange(m coredump.MemoryMap, addr uint64) int {
	for i, r := range m {
		if addr >= r.Addr && addr < r.End() {
			return i
		}
	}
	return -1
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// sha hashes what our reader returns for m's ranges.
func sha(t testing.TB, d *coredump.File, m []coredump.Extent) string {
	t.Helper()
	var all bytes.Buffer
	for _, r := range m {
		b := make([]byte, r.Size)
		if _, err := d.ReadAt(b, int64(r.Addr)); err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	return shaHex(all.Bytes())
}
