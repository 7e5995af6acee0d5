package confine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	allowed, other := t.TempDir(), t.TempDir()
	d, err := New([]string{allowed})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(allowed, "a.save")
	if err := os.WriteFile(img, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(other, "b.save")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(allowed, "out.save")))
	must(os.Symlink(img, filepath.Join(allowed, "in.save")))
	must(os.Symlink(other, filepath.Join(allowed, "outdir")))
	must(os.Mkdir(filepath.Join(allowed, "sub"), 0o700))
	for _, c := range []struct {
		name, path string
		create, ok bool
	}{
		{"existing file", img, false, true},
		{"new file", filepath.Join(allowed, "new.save"), true, true},
		{"new file in a subdirectory", filepath.Join(allowed, "sub", "n.save"), true, true},
		{"existing file for create", img, true, false},
		{"missing file", filepath.Join(allowed, "none"), false, false},
		{"relative", "a.save", false, false},
		{"dot-dot", filepath.Join(allowed, "sub") + "/../a.save", false, false},
		{"outside", outside, false, false},
		{"symlink to a file out", filepath.Join(allowed, "out.save"), false, false},
		{"symlink to a file in", filepath.Join(allowed, "in.save"), false, true},
		{"through a symlinked directory out", filepath.Join(allowed, "outdir", "b.save"), false, false},
		{"create through a symlinked directory out", filepath.Join(allowed, "outdir", "c.save"), true, false},
		{"a device", "/dev/null", false, false},
		{"a directory", filepath.Join(allowed, "sub"), false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := d.Resolve(c.path, c.create)
			if c.ok && err != nil {
				t.Fatalf("Resolve(%q): %v", c.path, err)
			}
			if !c.ok && err == nil {
				t.Fatalf("Resolve(%q) = %q, want a refusal", c.path, got)
			}
		})
	}
	// A device inside an allowed directory is refused as such.
	dd, err := New([]string{"/dev"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dd.Resolve("/dev/null", false); !errors.Is(err, ErrOutside) {
		t.Fatalf("device: %v, want ErrOutside", err)
	}
}

// TestDevicesAndCheck: a device is refused unless AllowDevice named it
// (by number: another node or a symlink to it passes, another device
// does not); Check at define lets a missing file through only where
// its directory is allowed.
func TestDevicesAndCheck(t *testing.T) {
	allowed, other := t.TempDir(), t.TempDir()
	d, err := New([]string{allowed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve("/dev/null", false); !errors.Is(err, ErrOutside) {
		t.Fatalf("/dev/null before AllowDevice: %v", err)
	}
	if err := d.AllowDevice(filepath.Join(allowed)); err == nil {
		t.Fatal("AllowDevice took a directory")
	}
	if err := d.AllowDevice("/dev/null"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(other, "null-link")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		ok   bool
	}{{"/dev/null", true}, {link, true}, {"/dev/zero", false}, {"/dev/full", false}} {
		got, err := d.Resolve(c.path, false)
		if c.ok != (err == nil) {
			t.Fatalf("Resolve(%q) = %q, %v; want ok %v", c.path, got, err, c.ok)
		}
		if c.ok && got != "/dev/null" {
			t.Fatalf("Resolve(%q) = %q, want /dev/null", c.path, got)
		}
	}
	if _, err := d.Resolve("/dev/null", true); err == nil {
		t.Fatal("an allowed device accepted as a file to create")
	}
	for _, c := range []struct {
		name, path string
		ok         bool
	}{
		{"missing file in an allowed directory", filepath.Join(allowed, "later.img"), true},
		{"missing file elsewhere", filepath.Join(other, "later.img"), false},
		{"missing directory", filepath.Join(allowed, "nodir", "later.img"), false},
		{"an allowed device", "/dev/null", true},
		{"another device", "/dev/zero", false},
	} {
		if err := d.Check(c.path); c.ok != (err == nil) {
			t.Fatalf("%s: Check(%q) = %v, want ok %v", c.name, c.path, err, c.ok)
		}
	}
}
