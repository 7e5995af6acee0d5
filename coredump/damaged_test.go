package coredump_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/coredump"
)

// tinyMap is 12 pages of RAM around a hole, for small dumps.
var tinyMap = coredump.MemoryMap{{Addr: 0, Size: 4 * coredump.PageSize, Offset: 0},
	{Addr: 16 * coredump.PageSize, Size: 8 * coredump.PageSize, Offset: 4 * coredump.PageSize}}

// tinyDump writes a small dump of the page mix in memory.
func tinyDump(t testing.TB, f coredump.Format, flat bool) []byte {
	t.Helper()
	ram := make([]byte, tinyMap.Pages()*coredump.PageSize)
	for i := range tinyMap.Pages() {
		fillPage(ram[i*coredump.PageSize:(i+1)*coredump.PageSize], i+7)
	}
	path := filepath.Join(t.TempDir(), "dump")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	_, err = coredump.Write(context.Background(), out, bytes.NewReader(ram), tinyMap, coredump.Options{Format: f, Flattened: flat,
		CPUs: []coredump.CPUState{{RIP: 0x1000}}, VMCoreInfo: []byte("OSRELEASE=6.1.0-tiny\n")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// knownError says err is one of the readers' documented errors.
func knownError(err error) bool {
	for _, e := range []error{coredump.ErrFormat, coredump.ErrCorrupt, coredump.ErrTruncated, coredump.ErrHole} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// readAll opens b and reads every page of every extent; it returns the
// first error, which must be a known one.
func readAll(t testing.TB, b []byte) error {
	t.Helper()
	d, err := coredump.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		if !knownError(err) {
			t.Errorf("Open: unclassified error %v", err)
		}
		return err
	}
	page := make([]byte, d.PageSize)
	for _, e := range d.Extents {
		for p, n := e.Addr, 0; p < e.End() && n < 64; p, n = p+uint64(d.PageSize), n+1 {
			if _, err := d.ReadAt(page, int64(p)); err != nil {
				if !knownError(err) {
					t.Errorf("ReadAt %#x: unclassified error %v", p, err)
				}
				return err
			}
		}
	}
	return nil
}

// TestTruncatedDumps cuts each format short at many points: every cut
// gives a clear error from Open or from the read of a page it cut off.
func TestTruncatedDumps(t *testing.T) {
	for _, c := range allFormats {
		full := tinyDump(t, c.f, c.flat)
		if err := readAll(t, full); err != nil {
			t.Fatalf("%s flat=%v: the whole file: %v", c.f, c.flat, err)
		}
		for _, n := range []int{0, 3, 15, 63, 100, 463, 4095, 4096, 4200, 8191, len(full) / 2, len(full) - coredump.PageSize, len(full) - 1} {
			if n < 0 || n >= len(full) {
				continue
			}
			err := readAll(t, full[:n])
			if err == nil {
				t.Errorf("%s flat=%v cut at %d of %d: read without error", c.f, c.flat, n, len(full))
				continue
			}
			if n >= 16 && !errors.Is(err, coredump.ErrTruncated) && !errors.Is(err, coredump.ErrCorrupt) {
				t.Errorf("%s flat=%v cut at %d: %v, want ErrTruncated", c.f, c.flat, n, err)
			}
		}
	}
}

// TestCorruptDumps damages fields that a reader must check.
func TestCorruptDumps(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	elf := tinyDump(t, coredump.FormatELF, false)
	kd := tinyDump(t, coredump.FormatKdumpZlib, false)
	flat := tinyDump(t, coredump.FormatKdumpZstd, true)
	// The first page descriptor and its data in the kdump file.
	subBlocks := le.Uint32(kd[432:])
	bitmapBlocks := le.Uint32(kd[436:])
	descOff := int(1+subBlocks+bitmapBlocks) * coredump.PageSize
	firstData := int(le.Uint64(kd[descOff+24:])) // page 1: the first non-zero page of the mix here
	cases := []struct {
		name string
		src  []byte
		edit func(b []byte)
		want error
	}{
		{"elf class", elf, func(b []byte) { b[4] = 9 }, coredump.ErrFormat},
		{"elf big-endian", elf, func(b []byte) { b[5] = 2 }, coredump.ErrFormat},
		{"elf not a core", elf, func(b []byte) { le.PutUint16(b[16:], 2) }, coredump.ErrFormat},
		{"elf phentsize", elf, func(b []byte) { le.PutUint16(b[54:], 32) }, coredump.ErrCorrupt},
		{"elf phnum", elf, func(b []byte) { le.PutUint16(b[56:], 60000) }, coredump.ErrTruncated},
		{"elf PN_XNUM without sections", elf, func(b []byte) { le.PutUint16(b[56:], 0xffff) }, coredump.ErrCorrupt},
		{"elf phoff", elf, func(b []byte) { le.PutUint64(b[32:], 1<<40) }, coredump.ErrTruncated},
		{"elf load past the end", elf, func(b []byte) { le.PutUint64(b[64+56+8:], 1<<40) }, coredump.ErrTruncated},
		{"elf filesz > memsz", elf, func(b []byte) { le.PutUint64(b[64+56+32:], 1<<20) }, coredump.ErrCorrupt},
		{"elf overlapping loads", elf, func(b []byte) { le.PutUint64(b[64+2*56+24:], coredump.PageSize) }, coredump.ErrCorrupt},
		{"elf note overrun", elf, func(b []byte) { le.PutUint32(b[le.Uint64(b[64+8:])+4:], 1<<30) }, coredump.ErrCorrupt},
		{"kdump signature", kd, func(b []byte) { b[0] = 'X' }, coredump.ErrFormat},
		{"kdump block size", kd, func(b []byte) { le.PutUint32(b[428:], 3000) }, coredump.ErrCorrupt},
		{"kdump version", kd, func(b []byte) { le.PutUint32(b[8:], 0) }, coredump.ErrCorrupt},
		{"kdump bitmaps huge", kd, func(b []byte) { le.PutUint32(b[436:], 1<<30) }, coredump.ErrTruncated},
		{"kdump max_mapnr beyond bitmap", kd, func(b []byte) { le.PutUint64(b[4096+96:], 1<<40) }, coredump.ErrCorrupt},
		{"kdump notes past the end", kd, func(b []byte) { le.PutUint64(b[4096+48:], 1<<40) }, coredump.ErrTruncated},
		{"kdump desc size", kd, func(b []byte) { le.PutUint32(b[descOff+24+8:], 1<<30) }, coredump.ErrCorrupt},
		{"kdump desc offset", kd, func(b []byte) { le.PutUint64(b[descOff+24:], 1<<40) }, coredump.ErrTruncated},
		{"kdump garbage zlib", kd, func(b []byte) { copy(b[firstData:], "garbage!") }, coredump.ErrCorrupt},
		{"kdump lzo page", kd, func(b []byte) { le.PutUint32(b[descOff+24+12:], coredump.FlagLZO) }, coredump.ErrCorrupt},
		{"flat header type", flat, func(b []byte) { be.PutUint64(b[16:], 7) }, coredump.ErrCorrupt},
		{"flat record size", flat, func(b []byte) { be.PutUint64(b[4096+8:], 1<<40) }, coredump.ErrTruncated},
		{"flat negative offset", flat, func(b []byte) { be.PutUint64(b[4096:], 1<<63) }, coredump.ErrCorrupt},
		{"flat inner signature", flat, func(b []byte) { b[4096+16] = 'X' }, coredump.ErrFormat},
		{"flat no end marker", flat, func(b []byte) { copy(b[len(b)-16:], make([]byte, 16)) }, coredump.ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(c.src)
			c.edit(b)
			err := readAll(t, b)
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestReadAtEdges: reads that cross into a hole stop there and say where.
func TestReadAtEdges(t *testing.T) {
	for _, c := range allFormats {
		b := tinyDump(t, c.f, c.flat)
		d, err := coredump.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2*coredump.PageSize)
		n, err := d.ReadAt(buf, 3*coredump.PageSize)
		var he *coredump.HoleError
		if n != coredump.PageSize || !errors.As(err, &he) || he.Addr != 4*coredump.PageSize {
			t.Errorf("%s flat=%v: read across the hole: n=%d err=%v", c.f, c.flat, n, err)
		}
		if _, err := d.ReadAt(buf, -1); err == nil {
			t.Errorf("%s: negative address accepted", c.f)
		}
		if got := d.Holes(); len(got) != 1 || got[0] != (coredump.Extent{Addr: 4 * coredump.PageSize, Size: 12 * coredump.PageSize}) {
			t.Errorf("%s flat=%v: holes %+v", c.f, c.flat, got)
		}
	}
}

// TestELF32 reads a hand-made ELF32 core: one PT_NOTE, one PT_LOAD of two
// pages at 0x1000, as QEMU writes for 32-bit guests.
func TestELF32(t *testing.T) {
	le := binary.LittleEndian
	const phoff, dataOff = 52, 0x1000
	note := coredump.EncodeNotes([]coredump.Note{{Name: "CORE", Type: 1, Desc: make([]byte, 144)}})
	b := make([]byte, dataOff+2*coredump.PageSize)
	copy(b, "\x7fELF\x01\x01\x01")
	le.PutUint16(b[16:], 4) // ET_CORE
	le.PutUint16(b[18:], 3) // EM_386
	le.PutUint32(b[28:], phoff)
	le.PutUint16(b[40:], 52)
	le.PutUint16(b[42:], 32)
	le.PutUint16(b[44:], 2)
	ph := b[phoff:]
	noteOff := uint32(phoff + 2*32)
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint32(ph[4:], noteOff)
	le.PutUint32(ph[16:], uint32(len(note)))
	le.PutUint32(ph[20:], uint32(len(note)))
	copy(b[noteOff:], note)
	ph = ph[32:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], dataOff)
	le.PutUint32(ph[12:], 0x1000)
	le.PutUint32(ph[16:], 2*coredump.PageSize)
	le.PutUint32(ph[20:], 3*coredump.PageSize) // the last page is memsz only: zeros
	for i := range 2 * coredump.PageSize {
		b[dataOff+i] = byte(i/coredump.PageSize + 1)
	}
	d, err := coredump.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Notes) != 1 || d.Notes[0].Name != "CORE" || len(d.Extents) != 1 || d.Extents[0] != (coredump.Extent{Addr: 0x1000, Size: 3 * coredump.PageSize}) {
		t.Fatalf("ELF32: notes %v extents %v", d.Notes, d.Extents)
	}
	got := make([]byte, 3)
	if _, err := d.ReadAt(got, 0x1000+coredump.PageSize-1); err != nil || !bytes.Equal(got, []byte{1, 2, 2}) {
		t.Errorf("ELF32 read: %v %v", got, err)
	}
	if _, err := d.ReadAt(got, 0x1000+2*coredump.PageSize); err != nil || !bytes.Equal(got, []byte{0, 0, 0}) {
		t.Errorf("ELF32 memsz beyond filesz: %v %v, want zeros", got, err)
	}
	if _, err := d.ReadAt(got, 0); !errors.Is(err, coredump.ErrHole) {
		t.Errorf("ELF32 below the load: %v, want ErrHole", err)
	}
}
