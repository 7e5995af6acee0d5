package coredump_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/vmledger/vmledger/coredump"
	"os"
	"path/filepath"
	"testing"
)

// writeDump writes ram through m in format f to a new file and opens it.
func writeDump(t testing.TB, dir string, ram *os.File, m coredump.MemoryMap, f coredump.Format, flat bool, o coredump.Options) (string, coredump.Stats) {
	t.Helper()
	name := string(f)
	if flat {
		name += ".flat"
	}
	path := filepath.Join(dir, name)
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	o.Format, o.Flattened = f, flat
	st, err := coredump.Write(context.Background(), out, ram, m, o)
	if err != nil {
		t.Fatalf("coredump.Write %s flat=%v: %v", f, flat, err)
	}
	fi, _ := out.Stat()
	if uint64(fi.Size()) != st.Bytes {
		t.Errorf("%s: coredump.Stats.Bytes %d, file has %d", path, st.Bytes, fi.Size())
	}
	return path, st
}

// allFormats are every format and container the writer produces.
var allFormats = []struct {
	f    coredump.Format
	flat bool
}{
	{coredump.FormatELF, false},
	{coredump.FormatKdumpZlib, false}, {coredump.FormatKdumpZlib, true},
	{coredump.FormatKdumpSnappy, false}, {coredump.FormatKdumpSnappy, true},
	{coredump.FormatKdumpZstd, false}, {coredump.FormatKdumpZstd, true},
	{coredump.FormatKdumpRaw, false},
}

// checkAgainstRAM reads every page of m from the dump and compares it
// with the RAM file, and checks that every hole reads as a hole.
func checkAgainstRAM(t testing.TB, d *coredump.File, ram *os.File, m coredump.MemoryMap) {
	t.Helper()
	want := make([]byte, 256*coredump.PageSize)
	got := make([]byte, 256*coredump.PageSize)
	for _, r := range m {
		for off := uint64(0); off < r.Size; off += uint64(len(want)) {
			n := min(uint64(len(want)), r.Size-off)
			if _, err := ram.ReadAt(want[:n], int64(r.Offset+off)); err != nil {
				t.Fatal(err)
			}
			if _, err := d.ReadAt(got[:n], int64(r.Addr+off)); err != nil {
				t.Fatalf("ReadAt %#x: %v", r.Addr+off, err)
			}
			if !bytes.Equal(got[:n], want[:n]) {
				for p := uint64(0); p < n; p += coredump.PageSize {
					if !bytes.Equal(got[p:p+coredump.PageSize], want[p:p+coredump.PageSize]) {
						t.Fatalf("page at %#x differs from the RAM file", r.Addr+off+p)
					}
				}
			}
		}
	}
	for _, h := range coredump.Holes(m.Extents()) {
		for _, a := range []uint64{h.Addr, h.Addr + h.Size/2, h.End() - 1} {
			if _, err := d.ReadAt(got[:1], int64(a)); !errors.Is(err, coredump.ErrHole) {
				t.Errorf("ReadAt %#x in hole %#x+%#x: %v, want coredump.ErrHole", a, h.Addr, h.Size, err)
			}
		}
	}
	if _, err := d.ReadAt(got[:1], int64(m.End())); !errors.Is(err, coredump.ErrHole) {
		t.Errorf("ReadAt past the end %#x: %v, want coredump.ErrHole", m.End(), err)
	}
}

// TestRoundTripSynthetic writes each format from a sparse RAM file with
// a hole in its map and reads every page back.
func TestRoundTripSynthetic(t *testing.T) {
	dir := t.TempDir()
	ram, err := os.Create(filepath.Join(dir, "ram"))
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	const pages = 3000
	fillFile(t, ram, 0, pages)
	m := coredump.MemoryMap{{Addr: 0, Size: 0xa0 * coredump.PageSize, Offset: 0},
		{Addr: 0x100 * coredump.PageSize, Size: 1000 * coredump.PageSize, Offset: 0xa0 * coredump.PageSize},
		{Addr: 1 << 32, Size: (pages - 1000 - 0xa0) * coredump.PageSize, Offset: (1000 + 0xa0) * coredump.PageSize}}
	cpus := []coredump.CPUState{{Index: 0, RIP: 0x1234, RSP: 0x8000}, {Index: 1, RIP: 0x5678}}
	info := []byte("OSRELEASE=6.1.0-test\nPAGESIZE=4096\n")
	for _, c := range allFormats {
		path, st := writeDump(t, dir, ram, m, c.f, c.flat, coredump.Options{CPUs: cpus, VMCoreInfo: info, Workers: 3})
		d, err := coredump.OpenFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d.Flattened != c.flat || d.Pages() != m.Pages() || st.Pages != m.Pages() {
			t.Errorf("%s: flattened %v pages %d (stats %d), want %v %d", path, d.Flattened, d.Pages(), st.Pages, c.flat, m.Pages())
		}
		checkAgainstRAM(t, d, ram, m)
		checkCPUNotes(t, d, cpus)
		if v, ok := d.VMCoreInfo(); !ok || !bytes.Equal(v, info) {
			t.Errorf("%s: VMCOREINFO %q", path, v)
		}
		d.Close()
	}
}
