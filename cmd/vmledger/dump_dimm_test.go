package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// Issue 11 with issue 12: a dump holds hot-plugged memory. A DIMM attached
// live to the tiny guest is filled with the page mix through its file; our
// dumps (kdump-zstd, ELF) hold it at the address QEMU gave it, and QEMU's
// own ELF dump - an oracle that walks the guest's memory map itself -
// holds the same bytes at the same address. Without the DIMM in our map,
// the address reads as a hole and the test fails.
func TestDumpHoldsHotpluggedMemory(t *testing.T) {
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	id := defineTinyWith(t, a, "dimm", 16, "max_memory_mib: 1024\nmemory_slots: 2\n")
	tap := tapEvents(t, natsConn(t, a), a.host, id)
	images := filepath.Join(state, "images")
	a.mustCLI("start", "dimm")
	a.mustCLI("attach-device", "dimm", writeFile(t, t.TempDir(), "m1.yaml", "kind: memory\nid: m1\nsize_mib: 128\n"))
	tap.next(t, "device-attached", 30*time.Second)
	a.mustCLI("suspend", "dimm")

	dimm := filepath.Join(filepath.Dir(ramPath(a, id)), "dimm-m1.ram")
	fillRAM(t, dimm, 0, 0, pagemix.Default)
	want, err := os.ReadFile(dimm)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 128<<20 {
		t.Fatalf("the DIMM file holds %d bytes", len(want))
	}

	qemuDump := filepath.Join(images, "qemu.elf")
	a.mustCLI("dump", "dimm", qemuDump, "--format", "elf", "--via-qemu", "--no-progress")
	tap.next(t, "dump-completed", 60*time.Second)
	addr := dimmAddr(t, qemuDump, 16<<20, uint64(len(want)))
	checkRange(t, qemuDump, addr, want)

	for _, format := range []string{"kdump-zstd", "elf"} {
		path := filepath.Join(images, format+".dump")
		a.mustCLI("dump", "dimm", path, "--format", format, "--no-progress")
		tap.next(t, "dump-completed", 60*time.Second)
		checkRange(t, path, addr, want)
		checkDump(t, path, ramPath(a, id), 16, nil) // and base RAM as before
	}
}

// dimmAddr finds, in QEMU's dump, the one extent beyond the first ram
// bytes of guest RAM that can hold size bytes: the DIMM is at its end
// (QEMU's ELF also holds the BIOS ROM, which ends at 4 GiB, where the
// DIMM of a small pc guest starts; the reader joins adjacent extents).
func dimmAddr(t testing.TB, dump string, ram, size uint64) int64 {
	t.Helper()
	f, err := coredump.OpenFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []coredump.Extent
	for _, e := range f.Extents {
		if e.Addr >= ram && e.Size >= size {
			found = append(found, coredump.Extent{Addr: e.End() - size, Size: size})
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: extents %v: want one of %d bytes above %#x", filepath.Base(dump), f.Extents, size, ram)
	}
	return int64(found[0].Addr)
}

// checkRange reads len(want) bytes at guest-physical addr out of the dump.
func checkRange(t testing.TB, dump string, addr int64, want []byte) {
	t.Helper()
	f, err := coredump.OpenFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, addr); err != nil {
		t.Fatalf("%s: read the DIMM at %#x: %v", filepath.Base(dump), addr, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: the DIMM at %#x differs from its file", filepath.Base(dump), addr)
	}
}
