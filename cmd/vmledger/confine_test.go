package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// Issue 14 d: every file a config names lies in an --allow-dir
// directory, checked at define and again at start and hot-plug, through
// symlinks; devices need --allow-device. A refusal is exit 2 and appends
// nothing; QEMU gets the real path and runs under seccomp.
func TestCLIConfinement(t *testing.T) {
	requireQEMU(t)
	own, outside := t.TempDir(), t.TempDir()
	run := shortRunDir(t)
	a := startAgentEnv(t, t.TempDir(), nil, "--accel", "tcg", "--run-dir", run, "--allow-dir", own, "--allow-device", "/dev/null")
	a.runDir = run
	img, outImg := filepath.Join(own, "tiny.img"), filepath.Join(outside, "tiny.img")
	for _, p := range []string{img, outImg} {
		if err := guest.WriteImage(p); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outImg, filepath.Join(own, "out.img")))
	must(os.Symlink(outside, filepath.Join(own, "outdir")))
	must(os.Symlink(img, filepath.Join(own, "link.img")))
	must(os.WriteFile(filepath.Join(outside, "vmlinuz"), []byte("k"), 0o600))
	cfgDir := diskDir(t)
	config := func(name, extra string) string {
		return writeFile(t, cfgDir, name+".yaml", "name: "+name+"\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\n"+extra)
	}
	disk := func(p string) string { return "disks: [{target: hda, path: " + p + ", format: raw, bus: ide}]\n" }
	before := lastSeqCLI(t, a)
	for _, c := range []struct{ name, extra, want string }{
		{"outside", disk(outImg), "outside the allowed directories"},
		{"symlink out", disk(filepath.Join(own, "out.img")), "symlink out of the allowed directories"},
		{"through a symlinked directory", disk(filepath.Join(own, "outdir", "tiny.img")), "outside the allowed directories"},
		{"dot-dot", disk(own + "/../" + filepath.Base(outside) + "/tiny.img"), `".."`},
		{"a device not allowed", disk("/dev/zero"), "not allowed"},
		{"kernel outside", "os: {kernel: " + filepath.Join(outside, "vmlinuz") + "}\n", "os.kernel"},
		{"missing directory", disk(filepath.Join(own, "none", "x.img")), "not allowed"},
	} {
		_, errs, code := a.cli("define", config("bad", c.extra))
		if code != exitUsage || !strings.Contains(errs, c.want) || !strings.Contains(errs, "not allowed") {
			t.Errorf("%s: exit %d, want %d with %q:\n%s", c.name, code, exitUsage, c.want, errs)
		}
	}
	if got := lastSeqCLI(t, a); got != before {
		t.Fatalf("refused defines appended events: last seq %d, was %d", got, before)
	}
	// An allowed device, and a file yet to be made in an allowed directory.
	a.mustCLI("define", config("dev", disk("/dev/null")))
	a.mustCLI("define", config("later", disk(filepath.Join(own, "later.img"))))
	if _, errs, code := a.cli("start", "later"); code != exitUsage || !strings.Contains(errs, "no such file") {
		t.Fatalf("start with a missing disk: exit %d %s", code, errs)
	}

	// Defined through a symlink inside: QEMU is given the real path.
	a.mustCLI("define", config("web", disk(filepath.Join(own, "link.img"))))
	a.mustCLI("start", "web")
	d := infoOf(t, a, "web")
	if d.Live == nil || d.Live.PID == 0 {
		t.Fatalf("web: %+v", d)
	}
	cmdline := mustRead(t, "/proc/"+strconv.Itoa(d.Live.PID)+"/cmdline")
	if !strings.Contains(cmdline, "filename="+img) || strings.Contains(cmdline, "link.img") {
		t.Fatalf("QEMU's command line names the disk as given, not its real path: %q", cmdline)
	}
	if status := mustRead(t, "/proc/"+strconv.Itoa(d.Live.PID)+"/status"); !strings.Contains(status, "Seccomp:\t2") {
		t.Fatalf("QEMU runs without its seccomp filter:\n%s", status)
	}
	// Hot-plug: a disk outside is refused, one inside is attached.
	blk := filepath.Join(own, "blk.img")
	must(os.WriteFile(blk, make([]byte, 1<<20), 0o600))
	v := infoOf(t, a, "web").Version
	if _, errs, code := a.cli("attach-device", "web", writeFile(t, cfgDir, "o.yaml", "kind: disk\nid: o1\ntarget: vdc\npath: "+outImg+"\n")); code != exitUsage || !strings.Contains(errs, "not allowed") {
		t.Fatalf("hot-plug outside: exit %d %s", code, errs)
	}
	if got := infoOf(t, a, "web").Version; got != v {
		t.Fatalf("a refused hot-plug appended: version %d, was %d", got, v)
	}
	a.mustCLI("attach-device", "web", writeFile(t, cfgDir, "b.yaml", "kind: disk\nid: b1\ntarget: vdb\npath: "+blk+"\n"))
	a.mustCLI("destroy", "web")

	// The symlink now points out: checked again at start, refused, nothing
	// appended, no QEMU.
	must(os.Remove(filepath.Join(own, "link.img")))
	must(os.Symlink(outImg, filepath.Join(own, "link.img")))
	v = infoOf(t, a, "web").Version
	if _, errs, code := a.cli("start", "web"); code != exitUsage || !strings.Contains(errs, "symlink out of the allowed directories") {
		t.Fatalf("start after the symlink moved out: exit %d %s", code, errs)
	}
	if d := infoOf(t, a, "web"); d.Version != v || d.State != domains.StateShutoff {
		t.Fatalf("after the refused start: %s at version %d, was %d", d.State, d.Version, v)
	}
}
