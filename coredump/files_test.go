package coredump

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The main RAM and two DIMM files read as one, each at its own guest
// addresses, and reads that span files.
func TestAddFiles(t *testing.T) {
	dir := t.TempDir()
	page := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n*PageSize) }
	ram := page('r', 4)
	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	if err := os.WriteFile(d1, page('a', 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d2, page('b', 1), 0o600); err != nil {
		t.Fatal(err)
	}
	base := MemoryMap{{Addr: 0, Size: 4 * PageSize}}
	// Given out of address order: the map comes back sorted.
	mem, err := AddFiles(bytes.NewReader(ram), uint64(len(ram)), base, []FileRange{
		{Addr: 1 << 33, Size: PageSize, Path: d2},
		{Addr: 1 << 32, Size: 2 * PageSize, Path: d1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	// File offsets follow the order given: RAM, d2, d1.
	want := MemoryMap{{0, 4 * PageSize, 0}, {1 << 32, 2 * PageSize, 5 * PageSize}, {1 << 33, PageSize, 4 * PageSize}}
	if len(mem.Map) != len(want) {
		t.Fatalf("map %v, want %v", mem.Map, want)
	}
	for i := range want {
		if mem.Map[i] != want[i] {
			t.Fatalf("map %v, want %v", mem.Map, want)
		}
	}
	for _, tc := range []struct {
		off  int64
		n    int
		want string
		err  error
	}{
		{0, 3, "rrr", nil},
		{4*PageSize - 2, 4, "rrbb", nil},
		{5*PageSize - 1, 2, "ba", nil},
		{7*PageSize - 1, 2, "a", io.EOF},
		{8 * PageSize, 1, "", io.EOF},
	} {
		b := make([]byte, tc.n)
		n, err := mem.ReadAt(b, tc.off)
		if string(b[:n]) != tc.want || err != tc.err {
			t.Errorf("ReadAt(%d, %#x) = %q, %v; want %q, %v", tc.n, tc.off, b[:n], err, tc.want, tc.err)
		}
	}
}

func TestAddFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, make([]byte, PageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	base := MemoryMap{{Addr: 0, Size: 4 * PageSize}}
	ram := bytes.NewReader(make([]byte, 4*PageSize))
	for _, tc := range []struct {
		name  string
		extra FileRange
		want  string
	}{
		{"missing", FileRange{Addr: 1 << 32, Size: PageSize, Path: filepath.Join(dir, "none")}, "no such file"},
		{"short", FileRange{Addr: 1 << 32, Size: 2 * PageSize, Path: short}, "at least"},
		{"directory", FileRange{Addr: 1 << 32, Size: PageSize, Path: dir}, "regular file"},
		{"overlap", FileRange{Addr: 2 * PageSize, Size: PageSize, Path: short}, "overlap"},
		{"unaligned", FileRange{Addr: 1<<32 + 1, Size: PageSize, Path: short}, "page-aligned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := AddFiles(ram, 4*PageSize, base, []FileRange{tc.extra})
			if err == nil {
				mem.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
