package coredump_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coredump"
)

// TestWriteRefuses: bad maps, formats and outputs give clear errors, and
// a RAM file shorter than the map or a cancelled ctx stop the writer.
func TestWriteRefuses(t *testing.T) {
	ram := bytes.NewReader(make([]byte, 4*coredump.PageSize))
	page := uint64(coredump.PageSize)
	good := coredump.MemoryMap{{Addr: 0, Size: 4 * page}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	file := func() io.Writer {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
		out  io.Writer
		m    coredump.MemoryMap
		o    coredump.Options
		want string
	}{
		{"empty map", nil, file(), nil, coredump.Options{Format: coredump.FormatELF}, "empty memory map"},
		{"unaligned", nil, file(), coredump.MemoryMap{{Addr: 1, Size: page}}, coredump.Options{Format: coredump.FormatELF}, "not page-aligned"},
		{"overlap", nil, file(), coredump.MemoryMap{{Size: 2 * page}, {Addr: page, Size: page}}, coredump.Options{Format: coredump.FormatELF}, "overlap"},
		{"unknown format", nil, file(), good, coredump.Options{Format: "kdump-lz4"}, "unknown format"},
		{"lzo", nil, file(), good, coredump.Options{Format: coredump.FormatKdumpLZO}, "no maintained Go LZO"},
		{"flattened elf", nil, file(), good, coredump.Options{Format: coredump.FormatELF, Flattened: true}, "kdump format"},
		{"plain kdump to a pipe", nil, &bytes.Buffer{}, good, coredump.Options{Format: coredump.FormatKdumpZstd}, "seekable"},
		{"RAM too short", nil, file(), coredump.MemoryMap{{Addr: 0, Size: 8 * page}}, coredump.Options{Format: coredump.FormatKdumpZlib, Flattened: true}, "read guest RAM"},
		{"cancelled", cancelled, file(), good, coredump.Options{Format: coredump.FormatKdumpSnappy, Flattened: true}, "canceled"},
	} {
		ctx := c.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		_, err := coredump.Write(ctx, c.out, ram, c.m, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if c.name == "cancelled" && !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v does not wrap context.Canceled", err)
		}
	}
	if _, err := coredump.ParseFormat("kdump-zstd"); err != nil {
		t.Error(err)
	}
	if _, err := coredump.X86Map("virt", 1<<30); err == nil {
		t.Error("X86Map accepted an unknown machine")
	}
}

// TestX86Map pins QEMU 7.2's splits below and above 4 GiB.
func TestX86Map(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		machine  string
		ram, low uint64
	}{
		{"pc", gib, gib}, {"pc", 3*gib + gib/2 - 4096, 3*gib + gib/2 - 4096}, {"pc", 3*gib + gib/2, 3 * gib},
		{"pc-i440fx-7.2", 8 * gib, 3 * gib},
		{"q35", 2*gib + 3*gib/4 - 4096, 2*gib + 3*gib/4 - 4096}, {"q35", 2*gib + 3*gib/4, 2 * gib}, {"pc-q35-7.2", 4*gib + gib/2, 2 * gib},
	} {
		m, err := coredump.X86Map(c.machine, c.ram)
		if err != nil {
			t.Fatal(err)
		}
		if m[0] != (coredump.Range{Size: c.low}) || c.ram > c.low && (len(m) != 2 || m[1] != (coredump.Range{Addr: 1 << 32, Size: c.ram - c.low, Offset: c.low})) || c.ram == c.low && len(m) != 1 {
			t.Errorf("X86Map(%s, %#x) = %v, want low %#x", c.machine, c.ram, m, c.low)
		}
	}
}
