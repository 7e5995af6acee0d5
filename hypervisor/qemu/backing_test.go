package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// TestQcow2FilesRefused: a qcow2 disk naming a backing file or an
// external data file (made by qemu-img) is refused before QEMU opens
// it; a standalone qcow2 and a raw file are not.
func TestQcow2FilesRefused(t *testing.T) {
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		requireQEMUImg(t)
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(img, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v %s", args, err, out)
		}
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	run("create", "-f", "raw", p("base.raw"), "1M")
	run("create", "-f", "qcow2", p("alone.qcow2"), "1M")
	run("create", "-f", "qcow2", "-b", p("base.raw"), "-F", "raw", p("overlay.qcow2"))
	run("create", "-f", "qcow2", "-o", "data_file="+p("data.raw"), p("extdata.qcow2"), "1M")
	for _, c := range []struct{ file, format, want string }{
		{"alone.qcow2", "qcow2", ""},
		{"base.raw", "raw", ""},
		{"overlay.qcow2", "qcow2", "backing file"},
		{"extdata.qcow2", "qcow2", "external data file"},
		{"overlay.qcow2", "raw", ""}, // as raw, QEMU reads no header
	} {
		err := checkQcow2Files(domains.Config{Disks: []domains.Disk{{Target: "vda", Path: p(c.file), Format: c.format}}})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s as %s: %v, want %q", c.file, c.format, err, c.want)
		}
	}
}

func requireQEMUImg(t *testing.T) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("qemu-img not installed (qemu-utils); required when CI=true")
	}
	t.Skip("qemu-img not installed (qemu-utils)")
}
