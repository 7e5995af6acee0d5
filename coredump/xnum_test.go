package coredump_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/coredump"
)

// TestELFPNXNum writes an ELF with 65536 PT_LOADs (one page each, holes
// between them) plus the PT_NOTE: e_phnum is PN_XNUM, section header 0
// holds 65537. Our reader and readelf read the count from there.
func TestELFPNXNum(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB")
	}
	const n = 1 << 16
	dir := t.TempDir()
	ram, err := os.Create(filepath.Join(dir, "ram"))
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	fillFile(t, ram, 1, 2) // one non-zero page, shared by every range
	m := make(coredump.MemoryMap, n)
	for i := range m {
		m[i] = coredump.Range{Addr: uint64(2*i) * coredump.PageSize, Size: coredump.PageSize, Offset: coredump.PageSize}
	}
	path, _ := writeDump(t, dir, ram, m, coredump.FormatELF, false, coredump.Options{})
	d, err := coredump.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if len(d.Extents) != n {
		t.Fatalf("%d extents, want %d", len(d.Extents), n)
	}
	want := make([]byte, coredump.PageSize)
	if _, err := ram.ReadAt(want, coredump.PageSize); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, coredump.PageSize)
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if _, err := d.ReadAt(got, int64(2*i)*coredump.PageSize); err != nil || !bytes.Equal(got, want) {
			t.Errorf("range %d: %v", i, err)
		}
		if _, err := d.ReadAt(got[:1], int64(2*i+1)*coredump.PageSize); !errors.Is(err, coredump.ErrHole) {
			t.Errorf("after range %d: %v, want ErrHole", i, err)
		}
	}
	requireTool(t, "readelf")
	out, err := exec.Command("readelf", "-h", path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(fmt.Sprintf("(%d)", n+1))) {
		t.Errorf("readelf -h: %v\n%s", err, out)
	}
}
