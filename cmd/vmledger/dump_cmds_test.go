package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coredump"
)

// writeTestDump writes a dump of 3+2 pages around a hole, each page
// filled with its page number's byte, plus a vCPU and a VMCOREINFO note.
func writeTestDump(t *testing.T, dir string, f coredump.Format, flat bool) string {
	t.Helper()
	ram := make([]byte, 5*coredump.PageSize)
	for i := range ram {
		ram[i] = byte(i/coredump.PageSize + 1)
	}
	m := coredump.MemoryMap{{Addr: 0, Size: 3 * coredump.PageSize}, {Addr: 0x10000, Size: 2 * coredump.PageSize, Offset: 3 * coredump.PageSize}}
	path := filepath.Join(dir, fmt.Sprintf("%s-%v", f, flat))
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := coredump.Write(context.Background(), out, bytes.NewReader(ram), m, coredump.Options{Format: f, Flattened: flat,
		CPUs: []coredump.CPUState{{RIP: 0xfff0, RSP: 0x7c00}}, VMCoreInfo: []byte("OSRELEASE=6.1.0-cli\n")}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDumpInfoAndRead: dump-info and dump-read on our files, offline, and
// their exit codes for holes, damaged files, non-dumps and bad arguments.
func TestDumpInfoAndRead(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		f    coredump.Format
		flat bool
	}{{coredump.FormatELF, false}, {coredump.FormatKdumpZstd, true}, {coredump.FormatKdumpZlib, false}} {
		path := writeTestDump(t, dir, c.f, c.flat)
		var in struct {
			File string `json:"file"`
			coredump.Info
		}
		if err := json.Unmarshal([]byte(mustRun(t, "dump-info", path, "--json")), &in); err != nil {
			t.Fatal(err)
		}
		wantFormat := "kdump"
		if c.f == coredump.FormatELF {
			wantFormat = "elf"
		}
		if in.Format != wantFormat || in.Flattened != c.flat || in.Pages != 5 || len(in.Extents) != 2 ||
			len(in.Holes) != 1 || in.Holes[0] != (coredump.Extent{Addr: 0x3000, Size: 0xd000}) || in.OSRelease != "6.1.0-cli" {
			t.Errorf("%s: dump-info %+v", path, in)
		}
		var pr *coredump.PRStatusInfo
		for _, n := range in.Notes {
			if n.PRStatus != nil {
				pr = n.PRStatus
			}
		}
		if pr == nil || pr.RIP != 0xfff0 || pr.RSP != 0x7c00 || pr.PID != 1 {
			t.Errorf("%s: NT_PRSTATUS %+v in %+v", path, pr, in.Notes)
		}
		text := mustRun(t, "dump-info", path)
		for _, want := range []string{"Holes:", "0x3000-0x10000", "NT_PRSTATUS", "6.1.0-cli"} {
			if !strings.Contains(text, want) {
				t.Errorf("dump-info %s lacks %q:\n%s", path, want, text)
			}
		}

		raw := mustRun(t, "dump-read", path, "0x2ffe", "2", "--raw")
		if raw != "\x03\x03" {
			t.Errorf("dump-read --raw 0x2ffe 2: %q", raw)
		}
		raw = mustRun(t, "dump-read", path, "65536", "0x2000", "--raw")
		if raw != strings.Repeat("\x04", 4096)+strings.Repeat("\x05", 4096) {
			t.Errorf("dump-read --raw 0x10000 0x2000: wrong bytes")
		}
		hex := mustRun(t, "dump-read", path, "0x10ff8", "16")
		if want := "0000000000010ff8  04 04 04 04 04 04 04 04  05 05 05 05 05 05 05 05  |................|\n"; hex != want {
			t.Errorf("dump-read hex:\n got %q\nwant %q", hex, want)
		}
		// Into the hole: what came before is printed, then exit 3.
		out, errs, code := runCLI(t, "dump-read", path, "0x2fff", "2", "--raw")
		if code != exitNotFound || out != "\x03" || !strings.Contains(errs, "hole") {
			t.Errorf("dump-read into the hole: exit %d, out %q, stderr %q", code, out, errs)
		}
	}

	kd := writeTestDump(t, dir, coredump.FormatKdumpSnappy, false)
	b, err := os.ReadFile(kd)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, "damaged")
	if err := os.WriteFile(damaged, b[:len(b)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	notDump := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDump, []byte("this is not a dump file at all"), 0o600)
	wantRun(t, exitCorrupt, "truncated", "dump-read", damaged, "0x10000", "8192")
	wantRun(t, exitUsage, "not a dump", "dump-info", notDump)
	wantRun(t, exitNotFound, "no such file", "dump-info", filepath.Join(dir, "missing"))
	wantRun(t, exitUsage, "ADDR", "dump-read", kd, "zz", "1")
	wantRun(t, exitUsage, "LEN", "dump-read", kd, "0", "0x80000000")
	wantRun(t, exitUsage, "takes 1 argument", "dump-info")
}
