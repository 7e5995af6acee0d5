package guest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestImageIsBootSector(t *testing.T) {
	img := Image()
	if len(img) != SectorSize {
		t.Fatalf("image is %d bytes, want %d", len(img), SectorSize)
	}
	if img[510] != 0x55 || img[511] != 0xAA {
		t.Fatalf("boot signature is %#02x %#02x, want 0x55 0xaa", img[510], img[511])
	}
	if !bytes.Contains(img, []byte(Banner+"\r\n")) {
		t.Errorf("image does not contain the banner %q", Banner)
	}
}

func TestImageReturnsCopy(t *testing.T) {
	a := Image()
	a[0] ^= 0xff
	if b := Image(); b[0] == a[0] {
		t.Fatal("modifying the result of Image changed the embedded image")
	}
}

// TestImageMatchesSource keeps boot.S and the committed tinyguest.img
// honest: whenever binutils is available, rebuilding must reproduce the
// committed bytes exactly.
func TestImageMatchesSource(t *testing.T) {
	for _, tool := range []string{"sh", "as", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "rebuilt.img")
	cmd := exec.CommandContext(ctx, "sh", "build.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Image()) {
		for i := range min(len(got), len(image)) {
			if got[i] != image[i] {
				t.Logf("first difference at offset %#x: rebuilt %#02x, committed %#02x", i, got[i], image[i])
				break
			}
		}
		t.Fatalf("rebuilding boot.S (%d bytes) does not reproduce the committed tinyguest.img (%d bytes); "+
			"run `go generate ./hypervisor/guest` and commit the result", len(got), len(image))
	}
}

func TestWriteImage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "guest.img")
	// An existing file must be replaced, not appended to or merged with.
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xee}, 2*DiskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteImage(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %v, want 0600", perm)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != DiskSize {
		t.Fatalf("disk image is %d bytes, want %d", len(got), DiskSize)
	}
	if !bytes.Equal(got[:SectorSize], Image()) {
		t.Error("disk image does not start with the boot sector")
	}
	if i := bytes.IndexFunc(got[SectorSize:], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("padding is not zero at offset %#x", SectorSize+i)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only guest.img (temporary file left behind?)", names)
	}
}

func TestWriteImageMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "guest.img")
	if err := WriteImage(path); err == nil {
		t.Fatal("WriteImage into a missing directory succeeded")
	}
}

func TestSetTimeCommand(t *testing.T) {
	tm := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if got, want := SetTimeCommand(tm), "T 20300102030405\r"; got != want {
		t.Errorf("SetTimeCommand = %q, want %q", got, want)
	}
}

func TestParseRTC(t *testing.T) {
	got, err := ParseRTC("RTC 2025-06-01 12:00:09\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 6, 1, 12, 0, 9, 0, time.UTC); !got.Equal(want) {
		t.Errorf("ParseRTC = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "OK T", Banner, "RTC 2025-13-01 00:00:00", "RTC 2025-06-01"} {
		if _, err := ParseRTC(bad); err == nil {
			t.Errorf("ParseRTC(%q) succeeded", bad)
		}
	}
}
