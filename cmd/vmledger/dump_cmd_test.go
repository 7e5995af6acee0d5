package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest/linuxguesttest"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// defineTinyWith defines the tiny guest with mib MiB of RAM and extra
// config lines (on_crash, ...).
func defineTinyWith(t testing.TB, a *agentProc, name string, mib int, extra string) string {
	t.Helper()
	dir := diskDir(t)
	img := filepath.Join(dir, "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	cfg := "name: " + name + "\nmemory_mib: " + strconv.Itoa(mib) + "\nvcpus: 1\nclock: {offset: utc}\n" +
		"disks: [{target: hda, path: " + img + ", format: raw, bus: ide}]\n" + extra
	var res domains.Result
	if err := json.Unmarshal([]byte(a.mustCLI("define", writeFile(t, dir, name+".yaml", cfg), "--json")), &res); err != nil {
		t.Fatal(err)
	}
	return res.Domain.String()
}

// fillRAM fills the guest's RAM file in [from, to) (to 0: the end) with
// the mix. The tiny guest lives below 1 MiB and SeaBIOS, whose handlers
// it calls, in the top MiB: a guest runs on over a fill between.
func fillRAM(t testing.TB, path string, from, to int, mix pagemix.Mix) {
	t.Helper()
	b := mapRAM(t, path)
	if to == 0 {
		to = len(b)
	}
	if _, err := mix.Fill(b[from:to], fillSeed); err != nil {
		t.Fatal(err)
	}
}

// legacyWindow is where QEMU's own dumps show the VGA window and the BIOS
// shadow instead of the RAM file's bytes (as in coredump's QEMU test).
func legacyWindow(addr uint64) bool { return addr >= 0xa0000 && addr < 0x100000 }

// checkDump has our reader read every page of the guest's map (but those
// skip names) out of the dump and compares it with the RAM file.
func checkDump(t testing.TB, dump, ramPath string, mib uint64, skip func(uint64) bool) {
	t.Helper()
	f, err := coredump.OpenFile(dump)
	if err != nil {
		t.Fatalf("open %s: %v", dump, err)
	}
	defer f.Close()
	ram, err := os.ReadFile(ramPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := coredump.X86Map("pc", mib<<20)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, coredump.PageSize)
	n := 0
	for _, r := range m {
		for off := uint64(0); off < r.Size; off += coredump.PageSize {
			if skip != nil && skip(r.Addr+off) {
				continue
			}
			if _, err := f.ReadAt(page, int64(r.Addr+off)); err != nil {
				t.Fatalf("%s: read page %#x: %v", filepath.Base(dump), r.Addr+off, err)
			}
			if !bytes.Equal(page, ram[r.Offset+off:r.Offset+off+coredump.PageSize]) {
				t.Fatalf("%s: page %#x differs from the RAM file", filepath.Base(dump), r.Addr+off)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no page compared")
	}
}

const fillSeed = 7

// checkFilled reads guest-physical [from, to) out of the dump and checks
// it holds the mix fillRAM wrote there.
func checkFilled(t testing.TB, dump string, from, to int64) {
	t.Helper()
	f, err := coredump.OpenFile(dump)
	if err != nil {
		t.Fatalf("open %s: %v", dump, err)
	}
	defer f.Close()
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil {
		t.Fatalf("%s: read [%#x, %#x): %v", filepath.Base(dump), from, to, err)
	}
	if err := pagemix.Default.Verify(b, fillSeed); err != nil {
		t.Fatalf("%s: %v", filepath.Base(dump), err)
	}
}

// noPartials fails when a dump left anything but finished files behind.
func noPartials(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		if strings.Contains(e.Name(), ".partial-") {
			t.Fatalf("a temporary dump file was left behind: %s", e.Name())
		}
		names = append(names, e.Name())
	}
	return names
}

// dumpFixture is an agent (TCG) with a running tiny guest of mib MiB.
type dumpFixture struct {
	a      *agentProc
	id     string
	tap    *eventTap
	images string // the agent's default allowed directory
}

func runningTiny(t testing.TB, name string, mib int) dumpFixture {
	t.Helper()
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	id := defineTinyWith(t, a, name, mib, "")
	tap := tapEvents(t, natsConn(t, a), a.host, id)
	a.mustCLI("start", name)
	return dumpFixture{a: a, id: id, tap: tap, images: filepath.Join(state, "images")}
}

// Issue 11, acceptance (dump verb): every format, ours and QEMU's, of a
// paused tiny guest whose whole RAM holds the page mix reads back, page by
// page, equal to the RAM file (QEMU's own outside the legacy window,
// where it shows the BIOS shadow); the guest stays paused (it was paused);
// dump-completed names the format and the file's size.
func TestDumpVerbFormats(t *testing.T) {
	fx := runningTiny(t, "dmp", 16)
	a, id, tap, images := fx.a, fx.id, fx.tap, fx.images
	a.mustCLI("suspend", "dmp")
	fillRAM(t, ramPath(a, id), 0, 0, pagemix.Default)
	for _, tc := range []struct {
		name string
		args []string
		skip func(uint64) bool
	}{
		{"elf", []string{"--format", "elf"}, nil},
		{"kdump-zlib", []string{"--format", "kdump-zlib"}, nil},
		{"kdump-snappy", []string{"--format", "kdump-snappy"}, nil},
		{"kdump-zstd", []string{"--format", "kdump-zstd"}, nil},
		{"kdump-zstd-flat", []string{"--format", "kdump-zstd", "--flattened"}, nil},
		{"kdump-zlib-flat", []string{"--format", "kdump-zlib", "--flattened"}, nil},
		{"qemu-elf", []string{"--format", "elf", "--via-qemu"}, legacyWindow},
		{"qemu-kdump-zlib", []string{"--format", "kdump-zlib", "--via-qemu"}, legacyWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(images, tc.name+".dump")
			a.mustCLI(append([]string{"dump", "dmp", path, "--no-progress"}, tc.args...)...)
			e := tap.next(t, "dump-completed", 30*time.Second)
			var p domains.DumpCompleted
			payload(t, e, &p)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if p.Path != path || p.Format != tc.args[1] || p.Bytes != uint64(fi.Size()) {
				t.Fatalf("dump-completed %+v; file %s is %d bytes", p, path, fi.Size())
			}
			checkDump(t, path, ramPath(a, id), 16, tc.skip)
			noPartials(t, images)
			if d := infoOf(t, a, "dmp"); d.State != domains.StatePaused {
				t.Fatalf("after the dump of a paused guest: state %s", d.State)
			}
		})
	}
}

// lastJobTypes returns the types recorded from the last job-started to
// its end. (What follows may be the guest's own: after a reset SeaBIOS
// resets the machine again, as a guest reset.)
func lastJobTypes(t testing.TB, tap *eventTap) []string {
	t.Helper()
	ts := tap.types()
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i] == "job-started" {
			for j := i; j < len(ts); j++ {
				if ts[j] == "job-completed" || ts[j] == "job-failed" {
					return ts[i : j+1]
				}
			}
			return ts[i:]
		}
	}
	t.Fatalf("no job-started among %v", ts)
	return nil
}

// Issue 11 (dump verb, virsh's meanings): a running guest is paused while
// dumped and runs after; --live never pauses it; --reset resets it after;
// --crash stops it (crashed) after. The page mix written into the RAM
// the guest does not use reads back exactly each time.
func TestDumpVerbGuestStates(t *testing.T) {
	fx := runningTiny(t, "dst", 16)
	a, id, tap, images := fx.a, fx.id, fx.tap, fx.images
	fillRAM(t, ramPath(a, id), 1<<20, 12<<20, pagemix.Default)
	for _, tc := range []struct {
		flag  string
		want  []string
		state domains.State
	}{
		{"", []string{"job-started", "paused", "dump-started", "dump-completed", "resumed", "job-completed"}, domains.StateRunning},
		{"--live", []string{"job-started", "dump-started", "dump-completed", "job-completed"}, domains.StateRunning},
		{"--reset", []string{"job-started", "paused", "dump-started", "dump-completed", "reset", "resumed", "job-completed"}, domains.StateRunning},
		{"--crash", []string{"job-started", "paused", "dump-started", "dump-completed", "stopped", "job-completed"}, domains.StateShutoff},
	} {
		t.Run("flag"+tc.flag, func(t *testing.T) {
			path := filepath.Join(images, "st"+tc.flag+".kdump")
			args := []string{"dump", "dst", path, "--format", "kdump-zstd", "--no-progress"}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			a.mustCLI(args...)
			tap.next(t, "job-completed", 30*time.Second)
			checkFilled(t, path, 1<<20, 12<<20)
			time.Sleep(300 * time.Millisecond) // a stray hint would land by now
			if got := lastJobTypes(t, tap); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
			if d := infoOf(t, a, "dst"); d.State != tc.state {
				t.Fatalf("state %s, want %s", d.State, tc.state)
			}
		})
	}
}

// Issue 11 (dump verb): aborting the job mid-dump leaves no file, records
// dump-failed and job-failed (aborted), and the guest runs again; the
// CLI's progress bar showed the job's progress meanwhile.
func TestDumpVerbAbort(t *testing.T) {
	fx := runningTiny(t, "dab", 768)
	a, id, tap, images := fx.a, fx.id, fx.tap, fx.images
	// Random pages compress slowest: the job is still running when aborted.
	fillRAM(t, ramPath(a, id), 1<<20, 760<<20, pagemix.Mix{Random: 100})
	path := filepath.Join(images, "aborted.kdump")
	type result struct {
		out, errs string
		code      int
	}
	done := make(chan result, 1)
	go func() {
		o, e, c := a.cli("dump", "dab", path, "--format", "kdump-zlib") // with its progress bar
		done <- result{o, e, c}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r struct {
			Job *domains.JobInfo `json:"job"`
		}
		if err := json.Unmarshal([]byte(a.mustCLI("job", "info", "dab", "--json")), &r); err != nil {
			t.Fatal(err)
		}
		if r.Job != nil && r.Job.Progress != nil && r.Job.Progress.Done > 0 {
			if r.Job.Progress.Done >= r.Job.Progress.Total {
				t.Skip("the dump finished before it could be aborted (machine too fast for this size)")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress from the dump job within 30 s (events %v)", tap.types())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.mustCLI("job", "abort", "dab")
	r := <-done
	if r.code == 0 || !strings.Contains(r.errs, "aborted") {
		t.Fatalf("dump after abort: exit %d, stderr %q", r.code, r.errs)
	}
	// The bar, fed from the job's progress subject, showed the phase.
	if !strings.Contains(r.errs, "dump memory") {
		t.Fatalf("no progress bar on stderr: %q", r.errs)
	}
	e := tap.next(t, "job-failed", 30*time.Second)
	if !strings.Contains(string(e.Payload), `"reason":"aborted"`) {
		t.Fatalf("job-failed %s", e.Payload)
	}
	if names := noPartials(t, images); len(names) != 0 {
		t.Fatalf("files left after an aborted dump: %v", names)
	}
	want := "job-started,paused,dump-started,dump-failed,resumed,job-failed"
	if got := strings.Join(lastJobTypes(t, tap), ","); got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
	if d := infoOf(t, a, "dab"); d.State != domains.StateRunning {
		t.Fatalf("after the abort: state %s", d.State)
	}
}

// Issue 11 (paths confined as for save images): a file outside the
// allowed directories, through "..", through a symlink out (exit 2), or
// one that exists already (exit 4) is refused with no event appended; a
// retry under the same command ID gets the first job's answer.
func TestDumpVerbPathRefused(t *testing.T) {
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	defineTinyWith(t, a, "dpr", 16, "")
	a.mustCLI("start", "dpr")
	images := filepath.Join(state, "images")
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(images, "out")); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(images, "exists.kdump")
	if err := os.WriteFile(exists, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := infoOf(t, a, "dpr").Version
	for _, p := range []string{
		filepath.Join(outside, "x.kdump"),
		images + "/../x.kdump",
		filepath.Join(images, "out", "x.kdump"),
		"/dev/null",
		exists, // last: a conflict (exit 4), as for save images
	} {
		want := exitUsage
		if p == exists {
			want = exitConflict
		}
		out, errs, code := a.cli("dump", "dpr", p, "--no-progress")
		if code != want {
			t.Fatalf("dump to %s: exit %d, want %d\nstdout %s\nstderr %s", p, code, want, out, errs)
		}
	}
	if v := infoOf(t, a, "dpr").Version; v != before {
		t.Fatalf("refused dumps appended events: version %d -> %d", before, v)
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep" {
		t.Fatalf("an existing file was changed: %q", b)
	}
	if es, _ := os.ReadDir(outside); len(es) != 0 {
		t.Fatalf("files written outside: %v", es)
	}
	_, _, code := a.cli("dump", "dpr", filepath.Join(images, "x.elf"), "--format", "elf", "--flattened")
	if code != exitUsage {
		t.Fatalf("elf --flattened: exit %d, want %d", code, exitUsage)
	}
	// A retry under the same command ID answers the first job, although
	// the file now exists; another request under it is a conflict.
	first := a.mustCLI("dump", "dpr", filepath.Join(images, "r.elf"), "--format", "elf", "--no-progress", "--command-id", "d-1", "--json")
	again := a.mustCLI("dump", "dpr", filepath.Join(images, "r.elf"), "--format", "elf", "--no-progress", "--command-id", "d-1", "--json")
	if first != again {
		t.Fatalf("retry answered\n%s\nafter\n%s", again, first)
	}
	if _, _, code := a.cli("dump", "dpr", filepath.Join(images, "r2.elf"), "--format", "elf", "--command-id", "d-1"); code != exitConflict {
		t.Fatalf("another dump under the same command ID: exit %d, want %d", code, exitConflict)
	}
}

// Issue 11, point 3 (on_crash, tiny guest's pvpanic): coredump-restart
// writes a dump into <state-dir>/dumps (dump-completed says where), the
// guest is stopped (crashed) and started again; restart does the same
// without a dump; preserve keeps it crashed, and it can still be dumped
// and destroyed.
func TestOnCrashPolicies(t *testing.T) {
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	nc := natsConn(t, a)
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"coredump-restart", []string{"crashed", "job-started", "dump-started", "dump-completed", "job-completed", "stopped", "started"}},
		{"coredump-destroy", []string{"crashed", "job-started", "dump-started", "dump-completed", "job-completed", "stopped"}},
		{"restart", []string{"crashed", "stopped", "started"}},
		{"preserve", []string{"crashed"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			name := "oc" + strings.ReplaceAll(tc.policy, "-", "")
			id := defineTinyWith(t, a, name, 16, "on_crash: "+tc.policy+"\n")
			tap := tapEvents(t, nc, a.host, id)
			con := tapConsole(t, nc, a.host, id)
			a.mustCLI("start", name)
			con.waitLine(t, "RTC ", 60*time.Second)
			tap.next(t, "started", 10*time.Second)
			sendConsole(t, nc, a.host, id, strings.TrimSuffix(guest.CmdPanic, "\r"))
			tap.next(t, "crashed", 30*time.Second)
			last := tc.want[len(tc.want)-1]
			if last != "crashed" {
				tap.next(t, last, 60*time.Second)
			}
			time.Sleep(500 * time.Millisecond)
			ts := tap.types()
			i := len(ts) - 1
			for i >= 0 && ts[i] != "crashed" {
				i--
			}
			if got := strings.Join(ts[max(i, 0):], ","); got != strings.Join(tc.want, ",") {
				t.Fatalf("events after the panic %s, want %s", got, strings.Join(tc.want, ","))
			}
			d := infoOf(t, a, name)
			switch tc.policy {
			case "coredump-restart", "restart":
				if d.State != domains.StateRunning {
					t.Fatalf("state %s, want running", d.State)
				}
				con.waitLine(t, "RTC ", 60*time.Second) // the guest runs again
			case "coredump-destroy":
				if d.State != domains.StateShutoff {
					t.Fatalf("state %s, want shut off", d.State)
				}
			case "preserve":
				if d.State != domains.StateCrashed {
					t.Fatalf("state %s, want crashed", d.State)
				}
				p := filepath.Join(state, "images", name+".elf")
				a.mustCLI("dump", name, p, "--format", "elf", "--no-progress")
				if _, err := coredump.OpenFile(p); err != nil {
					t.Fatal(err)
				}
				if d := infoOf(t, a, name); d.State != domains.StateCrashed {
					t.Fatalf("after dumping a preserved crash: state %s", d.State)
				}
				a.mustCLI("destroy", name)
			}
			if strings.HasPrefix(tc.policy, "coredump-") {
				var p domains.DumpCompleted
				for _, e := range tap.evs {
					if e.Type == "dump-completed" {
						payload(t, e, &p)
					}
				}
				if filepath.Dir(p.Path) != filepath.Join(state, "dumps") {
					t.Fatalf("on_crash dump at %q, want it in %s", p.Path, filepath.Join(state, "dumps"))
				}
				f, err := coredump.OpenFile(p.Path)
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

// on_crash is validated at define.
func TestOnCrashValidated(t *testing.T) {
	a := startAgent(t, t.TempDir())
	dir := t.TempDir()
	cfg := "name: bad\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\non_crash: reboot\n"
	_, errs, code := a.cli("define", writeFile(t, dir, "bad.yaml", cfg))
	if code != exitUsage || !strings.Contains(errs, "on_crash") {
		t.Fatalf("define with on_crash reboot: exit %d, stderr %q", code, errs)
	}
}

// crashRelease runs crash --osrelease on a dump.
func crashRelease(t testing.TB, path string) string {
	t.Helper()
	if _, err := exec.LookPath("crash"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but crash is not installed")
		}
		t.Skip("crash not installed")
	}
	out, err := exec.Command("crash", "--osrelease", path).CombinedOutput()
	if err != nil {
		t.Fatalf("crash --osrelease %s: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Issue 11, acceptance d: a Linux guest that panics (echo c >
// /proc/sysrq-trigger, reported by pvpanic) under on_crash
// coredump-restart leaves a readable dump in <state-dir>/dumps, whose
// VMCOREINFO (our reader, and crash --osrelease) names the guest's kernel
// release, and boots again.
func TestLinuxOnCrashCoredumpRestart(t *testing.T) {
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	id := defineLinux(t, a, "lxc", "{offset: utc}")
	cfg := configOf(t, a, "lxc")
	cfg.OnCrash = domains.CrashCoredumpRestart
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.mustCLI("define", writeFile(t, t.TempDir(), "lxc.json", string(b))) // config-updated
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "lxc")
	con.waitLine(t, linuxguest.ReadyPrefix, linuxBoot)
	con.drain()
	sendConsole(t, nc, a.host, id, linuxguest.CmdPanic)
	tap.next(t, "crashed", linuxReply)
	e := tap.next(t, "dump-completed", 5*time.Minute)
	var p domains.DumpCompleted
	payload(t, e, &p)
	tap.next(t, "stopped", linuxReply)
	tap.next(t, "started", linuxReply)
	con.waitLine(t, linuxguest.ReadyPrefix, linuxBoot) // it runs again
	if d := infoOf(t, a, "lxc"); d.State != domains.StateRunning {
		t.Fatalf("after the restart: state %s", d.State)
	}
	if filepath.Dir(p.Path) != filepath.Join(state, "dumps") {
		t.Fatalf("dump at %s, want it in %s", p.Path, filepath.Join(state, "dumps"))
	}
	f, err := coredump.OpenFile(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, ok := f.VMCoreInfo()
	if !ok {
		t.Fatal("the on_crash dump has no VMCOREINFO note")
	}
	rel, _ := coredump.VMCoreInfoValue(info, "OSRELEASE")
	want := linuxguesttest.Image(t).Release
	if rel != want {
		t.Fatalf("the dump's VMCOREINFO says OSRELEASE %q, want %q", rel, want)
	}
	if got := crashRelease(t, p.Path); got != want {
		t.Fatalf("crash --osrelease: %q, want %q", got, want)
	}
}
