package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest"
	"github.com/vmledger/vmledger/migrate"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// Issue 10: save, restore and managed save through a real agent and real
// QEMU (the tiny guest under TCG). docs/migrate.md, "The agent's verbs".

const utcVariable = "{offset: variable, adjustment: 0, basis: utc}"

// defineTinyMem is defineTiny with a memory size.
func defineTinyMem(t testing.TB, a *agentProc, name string, mib int) string {
	t.Helper()
	dir := diskDir(t)
	img := filepath.Join(dir, "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	cfg := "name: " + name + "\nmemory_mib: " + itoa(mib) + "\nvcpus: 1\nclock: " + utcVariable +
		"\ndisks: [{target: hda, path: " + img + ", format: raw, bus: ide}]\n"
	var res domains.Result
	if err := json.Unmarshal([]byte(a.mustCLI("define", writeFile(t, dir, name+".yaml", cfg), "--json")), &res); err != nil {
		t.Fatal(err)
	}
	return res.Domain.String()
}

// saveAgent is a TCG agent that allows the given image directories.
func saveAgent(t testing.TB, allow ...string) *agentProc {
	t.Helper()
	requireQEMU(t)
	run := shortRunDir(t)
	args := []string{"--accel", "tcg", "--run-dir", run}
	for _, d := range allow {
		args = append(args, "--allow-dir", d)
	}
	a := startAgentEnv(t, t.TempDir(), nil, args...)
	a.runDir = run
	return a
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func imagesDir(a *agentProc) string { return filepath.Join(a.stateDir, "images") }

func ramPath(a *agentProc, id string) string { return filepath.Join(a.runDir, id, "guest.ram") }

// expectTypes checks that the events come in this order (others between
// are allowed).
func (tap *eventTap) expectTypes(t testing.TB, within time.Duration, types ...string) []plainEvent {
	t.Helper()
	out := make([]plainEvent, 0, len(types))
	for _, typ := range types {
		out = append(out, tap.next(t, typ, within))
	}
	return out
}

// readRTC drains old console lines and returns the next RTC the guest
// prints and when.
func readRTC(t testing.TB, con *consoleTap) (time.Time, time.Time) {
	t.Helper()
	for len(con.lines) > 0 {
		<-con.lines
	}
	line := con.waitLine(t, "RTC ", 60*time.Second)
	at := time.Now()
	rtc, err := guest.ParseRTC(line)
	if err != nil {
		t.Fatal(err)
	}
	return rtc, at
}

// Acceptance a (tiny guest): the RTC set to 2030 survives a save and a
// restore, counting the seconds in between, and a change after the
// restore is recorded with the right absolute adjustment; every step is
// streamed as an event.
func TestSaveRestoreClock(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTiny(t, a, "clk", utcVariable)
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "clk")
	con.waitLine(t, "RTC ", 60*time.Second)
	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	setRTC(t, a, tap, id, "clk", y2030)

	img := filepath.Join(imagesDir(a), "clk.save")
	a.mustCLI("save", "clk", img, "--command-id", "save-1")
	evs := tap.expectTypes(t, 10*time.Second, "job-started", "save-started", "paused", "save-completed", "stopped", "job-completed")
	var st domains.Stopped
	payload(t, evs[4], &st)
	var pa domains.Paused
	payload(t, evs[2], &pa)
	if st.Reason != domains.StopSaved || pa.Reason != domains.PauseSave {
		t.Fatalf("paused %+v, stopped %+v: want reasons save and saved", pa, st)
	}
	if d := infoOf(t, a, "clk"); d.State != domains.StateShutoff {
		t.Fatalf("after save: %s", d.State)
	}
	if out := a.mustCLI("save-image", "info", img); !strings.Contains(out, `"name": "clk"`) || !strings.Contains(out, "Was running:  true") {
		t.Fatalf("save-image info:\n%s", out)
	}
	// A retry with the same command ID gets the first result and acts
	// on nothing (the image exists and the domain is shut off by now).
	before := lastSeq(t, nc)
	a.mustCLI("save", "clk", img, "--command-id", "save-1")
	if _, errs, code := a.cli("save", "clk", img+".2", "--command-id", "save-1"); code != exitConflict {
		t.Fatalf("save-1 reused for another path: exit %d, %s", code, errs)
	}
	time.Sleep(3 * time.Second) // time passes while the guest is saved

	a.mustCLI("restore", img, "--command-id", "restore-1")
	evs = tap.expectTypes(t, 10*time.Second, "job-started", "restore-started", "started", "restore-completed", "job-completed")
	a.mustCLI("restore", img, "--command-id", "restore-1")
	if got := lastSeq(t, nc); got != evs[len(evs)-1].Seq {
		t.Fatalf("retries appended events: last seq %d, the restore ended at %d (before the save retry: %d)", got, evs[len(evs)-1].Seq, before)
	}
	var sp domains.Started
	payload(t, evs[2], &sp)
	if sp.Reason != domains.StartRestored {
		t.Fatalf("started %+v, want restored", sp)
	}
	rtc, at := readRTC(t, con)
	near(t, "guest RTC after restore - (2030 + elapsed)", rtc.Sub(y2030.Add(at.Sub(t0))).Seconds(), 0, 2)
	if d := infoOf(t, a, "clk"); d.State != domains.StateRunning {
		t.Fatalf("after restore: %s", d.State)
	}
	// QEMU reports the next change relative to the restored QEMU's base:
	// the adjustment recorded must still be absolute (setRTC checks it).
	setRTC(t, a, tap, id, "clk", time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC))
	a.mustCLI("destroy", "clk")
}

// mapRAM maps a guest's RAM file shared.
func mapRAM(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}

// guestArea is the part of a running tiny guest's RAM the tests fill: the
// guest lives in the first MiB and the firmware near the top.
func guestArea(b []byte) []byte { return b[2<<20 : len(b)-2<<20] }

// Acceptance b: RAM filled with the page mix through the memory file is
// byte-identical after a save on one agent and a restore on another
// (another state directory and run directory, as another host), whose RAM
// path held a stale file of garbage: not one byte of it reaches the guest.
func TestSaveRestoreMemoryAcrossAgents(t *testing.T) {
	shared := t.TempDir() // the images directory both agents allow (NFS, say)
	a := saveAgent(t, shared)
	id := defineTinyMem(t, a, "mem", 64)
	a.mustCLI("start", "mem", "--paused") // no guest instruction touches the mix
	const seed = 1010
	if _, err := pagemix.Default.FillFile(ramPath(a, id), seed); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(shared, "mem.save")
	a.mustCLI("save", "mem", img, "--compress", "snappy")
	if _, err := os.Stat(ramPath(a, id)); err == nil {
		t.Fatalf("the saved guest's RAM file is still there")
	}

	b := saveAgent(t, shared)
	// Garbage where the destination's RAM file will be.
	garbage := make([]byte, 64<<20)
	for i := range garbage {
		garbage[i] = byte(i*7 + 13)
	}
	if err := os.MkdirAll(filepath.Dir(ramPath(b, id)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ramPath(b, id), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	b.mustCLI("restore", img)
	d := infoOf(t, b, "mem")
	if d.State != domains.StatePaused || d.Config.UUID.String() != id {
		t.Fatalf("restored on the second agent: %s %s (want paused %s)", d.State, d.Config.UUID, id)
	}
	if err := pagemix.Default.VerifyFile(ramPath(b, id), seed); err != nil {
		t.Fatalf("restored RAM: %v", err)
	}
	b.mustCLI("destroy", "mem")
}

// qemusIn lists the QEMU processes whose command line names dir.
func qemusIn(dir string) []string {
	out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+dir+"/").Output()
	return strings.Fields(string(out))
}

// Acceptance c: restore refuses torn and hostile images and paths with a
// clear message, appends nothing, and leaves no QEMU running.
func TestRestoreRefusesDamagedImages(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTiny(t, a, "torn", utcVariable)
	a.mustCLI("start", "torn")
	good := filepath.Join(imagesDir(a), "good.save")
	a.mustCLI("save", "torn", good)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := imagesDir(a)
	type bad struct{ name, path, want string }
	var cases []bad
	put := func(name string, b []byte, want string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, bad{name, p, want})
	}
	for _, n := range []int{0, 5, 63, 64, 100, len(raw) / 3, len(raw) / 2, len(raw) - 33, len(raw) - 1} {
		put("cut-"+itoa(n), raw[:n], "save image")
	}
	for _, off := range []int{10, 30, 70, len(raw) / 2, len(raw) - 10} {
		b := slices.Clone(raw)
		b[off] ^= 0x40
		put("flip-"+itoa(off), b, "save image")
	}
	partial := slices.Clone(raw)
	copy(partial, "VMLPART\x01")
	put("partial", partial, "did not finish")
	// A config define refuses (vcpus 0), in an image that is otherwise
	// whole: written by save-image define's library with no check.
	cfgBad := writeImageWithConfig(t, dir, "badcfg", raw, func(c map[string]any) { c["name"] = "no/slash" })
	cases = append(cases, bad{"bad config", cfgBad, "config"})
	outside := filepath.Join(t.TempDir(), "out.save")
	if err := os.WriteFile(outside, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, bad{"outside", outside, "not allowed"})
	link := filepath.Join(dir, "link.save")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, bad{"symlink out", link, "symlink"})
	cases = append(cases, bad{"dot-dot", dir + "/../images/good.save", `".."`}, bad{"device", "/dev/zero", "not allowed"})

	nc := natsConn(t, a)
	before := lastSeq(t, nc)
	for _, c := range cases {
		out, errs, code := a.cli("restore", c.path)
		t.Logf("%s: exit %d: %s", c.name, code, strings.TrimSpace(errs))
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: restore exit %d, stdout %q stderr %q: want a refusal mentioning %q", c.name, code, out, errs, c.want)
		}
	}
	if got := lastSeq(t, nc); got != before {
		t.Fatalf("refused restores appended events: last seq %d, was %d", got, before)
	}
	if q := qemusIn(a.runDir); len(q) != 0 {
		t.Fatalf("QEMU left running: %v", q)
	}
	if d := infoOf(t, a, "torn"); d.State != domains.StateShutoff || d.Config.UUID.String() != id {
		t.Fatalf("domain after refused restores: %s", d.State)
	}
	// save-image define: a config for another guest (more memory) is
	// refused and the image left as it was; a compatible one (another
	// clock) replaces the config, --paused the state restore leaves.
	dir2 := t.TempDir()
	if _, errs, code := a.cli("save-image", "define", good, writeFile(t, dir2, "big.yaml", "name: torn\nmemory_mib: 32\nvcpus: 1\nclock: {offset: utc}\n")); code != exitUsage || !strings.Contains(errs, "memory") {
		t.Fatalf("save-image define with other memory: exit %d, %s", code, errs)
	}
	if after, _ := os.ReadFile(good); !slices.Equal(after, raw) {
		t.Fatal("a refused save-image define changed the image")
	}
	var img imageInfo
	if err := json.Unmarshal([]byte(a.mustCLI("save-image", "info", good, "--json")), &img); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["clock"] = map[string]any{"offset": "variable", "adjustment": 3600, "basis": "utc"}
	newCfg, _ := json.Marshal(cfg)
	a.mustCLI("save-image", "define", good, writeFile(t, dir2, "new.json", string(newCfg)), "--paused")
	if err := json.Unmarshal([]byte(a.mustCLI("save-image", "info", good, "--json")), &img); err != nil {
		t.Fatal(err)
	}
	var inImage domains.Config
	if err := json.Unmarshal(img.Config, &inImage); err != nil {
		t.Fatal(err)
	}
	if img.WasRunning || inImage.Clock.Adjustment != 3600 {
		t.Fatalf("after save-image define: was_running %v, config %s", img.WasRunning, img.Config)
	}

	// The good image still restores, with the config put in.
	a.mustCLI("restore", good)
	if d := infoOf(t, a, "torn"); d.State != domains.StatePaused || d.Config.Clock.Adjustment != 3600 {
		t.Fatalf("restored from the redefined image: %s, clock %+v", d.State, d.Config.Clock)
	}
	a.mustCLI("destroy", "torn")
}

// writeImageWithConfig copies an image with its config changed by edit,
// through the save-image define path's rewrite but without its checks.
func writeImageWithConfig(t *testing.T, dir, name string, img []byte, edit func(map[string]any)) string {
	t.Helper()
	p := filepath.Join(dir, name+".save")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	var info imageInfo
	if err := json.Unmarshal([]byte(mustRun(t, "save-image", "info", p, "--json")), &info); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(info.Config, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	rawCfg, _ := json.Marshal(c)
	if _, err := migrate.Rewrite(p, rawCfg, info.WasRunning); err != nil {
		t.Fatal(err)
	}
	return p
}

// progressOf waits for the first progress report of the domain's job with
// some bytes done.
func progressOf(t testing.TB, nc *nats.Conn, host, id string) {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(bus.JobProgressSubject(host, uuidOf(t, id)), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m := <-ch:
			var j domains.JobInfo
			if json.Unmarshal(m.Data, &j) == nil && j.Progress != nil && j.Progress.Done > 0 {
				return
			}
		case <-deadline:
			t.Fatal("no job progress within 60 s")
		}
	}
}

// Acceptance d: a save that fails midway (QEMU killed, the disk full) or
// is aborted leaves the domain as it was (running, if it ran; crashed if
// its QEMU was killed), records job-failed with the reason, and leaves no
// image restore would accept.
func TestSaveFailuresLeaveDomainAsItWas(t *testing.T) {
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", small).Run() })
	big := t.TempDir()
	a := saveAgent(t, small, big)
	id := defineTinyMem(t, a, "fail", 768)
	nc := natsConn(t, a)
	tap := tapEvents(t, nc, a.host, id)
	con := tapConsole(t, nc, a.host, id)
	a.mustCLI("start", "fail")
	con.waitLine(t, "RTC ", 60*time.Second)
	// Random and text pages make the stream long enough to cut.
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(a, id))), 7); err != nil {
		t.Fatal(err)
	}
	failed := func(reason, want string) {
		t.Helper()
		ev := tap.next(t, "job-failed", 60*time.Second)
		var p domains.JobFailed
		payload(t, ev, &p)
		if p.Kind != domains.JobSave || p.Reason != reason || !strings.Contains(p.Error, want) {
			t.Fatalf("job-failed %+v: want reason %s, error mentioning %q", p, reason, want)
		}
	}
	noImage := func(dir string) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".save") {
				if _, _, code := a.cli("save-image", "info", filepath.Join(dir, e.Name())); code == 0 {
					t.Fatalf("a failed save left an image that verifies: %s", e.Name())
				}
			}
		}
		if len(ents) != 0 {
			t.Fatalf("a failed save left files: %v", ents)
		}
	}
	running := func() {
		t.Helper()
		if d := infoOf(t, a, "fail"); d.State != domains.StateRunning {
			t.Fatalf("after the failed save the domain is %s, want running", d.State)
		}
		readRTC(t, con) // and the guest goes on
	}

	// The disk full.
	_, errs, code := a.cli("save", "fail", filepath.Join(small, "full.save"), "--compress", "none", "--no-progress")
	if code == 0 || !strings.Contains(errs, "no space left") {
		t.Fatalf("save to a full disk: exit %d, %s", code, errs)
	}
	failed(domains.JobError, "no space left")
	noImage(small)
	running()

	// job abort during the save, while the CLI follows it with its
	// progress bar: the CLI then fails, saying why.
	type cliRun struct {
		errs string
		code int
	}
	ran := make(chan cliRun, 1)
	go func() {
		_, errs, code := a.cli("save", "fail", filepath.Join(big, "aborted.save"))
		ran <- cliRun{errs, code}
	}()
	progressOf(t, nc, a.host, id)
	a.mustCLI("job", "abort", "fail")
	failed(domains.JobAborted, "aborted")
	if r := <-ran; r.code != exitInternal || !strings.Contains(r.errs, "save memory") || !strings.Contains(r.errs, "failed (aborted)") {
		t.Fatalf("the CLI following the aborted save: exit %d, stderr %q: want exit 1, its progress bar and the reason", r.code, r.errs)
	}
	noImage(big)
	running()
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(a, id))), 7); err != nil {
		t.Fatalf("guest RAM after the aborted save: %v", err)
	}

	// QEMU killed during the save.
	pid := infoOf(t, a, "fail").Live.PID
	a.mustCLI("save", "fail", filepath.Join(big, "killed.save"), "--detach")
	progressOf(t, nc, a.host, id)
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	failed(domains.JobError, "")
	noImage(big)
	if d := infoOf(t, a, "fail"); d.State != domains.StateShutoff || d.Reason != domains.StopCrashed {
		t.Fatalf("after QEMU was killed during the save: %s (%s), want shut off (crashed)", d.State, d.Reason)
	}
}

// Acceptance e: managedsave, then start resumes the same guest (its RTC
// and its RAM); list shows the image while it exists; start --force-boot
// and managedsave-remove discard it.
func TestManagedSave(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTinyMem(t, a, "ms", 64)
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "ms")
	con.waitLine(t, "RTC ", 60*time.Second)
	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	setRTC(t, a, tap, id, "ms", y2030)
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(a, id))), 99); err != nil {
		t.Fatal(err)
	}
	managed := func(want bool) {
		t.Helper()
		var rep api.ListReply
		if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Domains) != 1 || rep.Domains[0].ManagedSave != want {
			t.Fatalf("list: %+v, want managed save %v", rep.Domains, want)
		}
	}
	a.mustCLI("managedsave", "ms")
	managed(true)
	if _, errs, code := a.cli("undefine", "ms"); code != exitConflict || !strings.Contains(errs, "managed save") {
		t.Fatalf("undefine with a managed save image: exit %d, %s", code, errs)
	}
	if out := a.mustCLI("list"); !strings.Contains(out, "MANAGED SAVE") || !strings.Contains(out, "yes") {
		t.Fatalf("list:\n%s", out)
	}
	a.mustCLI("start", "ms")
	ev := tap.next(t, "started", 30*time.Second)
	var sp domains.Started
	payload(t, ev, &sp)
	if sp.Reason != domains.StartRestored {
		t.Fatalf("start after managedsave: started %+v, want restored", sp)
	}
	managed(false)
	rtc, at := readRTC(t, con)
	near(t, "guest RTC after managed restore - (2030 + elapsed)", rtc.Sub(y2030.Add(at.Sub(t0))).Seconds(), 0, 2)
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(a, id))), 99); err != nil {
		t.Fatalf("RAM after managed restore: %v", err)
	}

	// --force-boot discards the image and boots.
	a.mustCLI("managedsave", "ms")
	a.mustCLI("start", "ms", "--force-boot")
	removedBecause(t, tap, domains.ManagedSaveDiscarded)
	ev = tap.next(t, "started", 30*time.Second)
	for {
		payload(t, ev, &sp)
		if sp.Reason == domains.StartBooted {
			break
		}
		ev = tap.next(t, "started", 30*time.Second)
	}
	managed(false)

	// managedsave-remove discards it; start then boots.
	a.mustCLI("managedsave", "ms")
	a.mustCLI("managedsave-remove", "ms")
	removedBecause(t, tap, domains.ManagedSaveRemovedByUser)
	managed(false)
	if _, _, code := a.cli("managedsave-remove", "ms"); code != exitNotFound {
		t.Fatalf("managedsave-remove without an image: exit %d, want %d", code, exitNotFound)
	}
	a.mustCLI("start", "ms")
	if d := infoOf(t, a, "ms"); d.State != domains.StateRunning || d.Live == nil {
		t.Fatalf("start after managedsave-remove: %s", d.State)
	}
	a.mustCLI("destroy", "ms")
}

// removedBecause waits for managed-save-removed and checks its reason.
func removedBecause(t testing.TB, tap *eventTap, reason string) {
	t.Helper()
	var p domains.ManagedSaveRemoved
	payload(t, tap.next(t, string(domains.TypeManagedSaveRemoved), 10*time.Second), &p)
	if p.Reason != reason || filepath.Base(p.Path) == "" {
		t.Fatalf("managed-save-removed %+v, want reason %s", p, reason)
	}
}

// Acceptance a on the Linux guest: the RTC set from inside Linux (date -s,
// hwclock -w) survives save and restore (hwclock -r reads 2030 plus the
// elapsed time), and a second hwclock -w after the restore is recorded
// with the right absolute adjustment.
func TestLinuxSaveRestoreClock(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineLinux(t, a, "lxsave", utcVariable)
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "lxsave")
	waitReady(t, con, linuxBoot)
	setLinuxRTC := func(at time.Time) {
		t.Helper()
		t0 := time.Now()
		sendConsole(t, nc, a.host, id, linuxguest.SetRTCCommand(at))
		var p rtcPayload
		payload(t, tap.next(t, "rtc-changed", linuxReply), &p)
		// hwclock -w writes at the next whole second of the system clock.
		near(t, "adjustment - (target - now)", float64(p.Adjustment)-at.Sub(t0).Seconds(), 0.5, 2.5)
	}
	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	setLinuxRTC(y2030)

	img := filepath.Join(imagesDir(a), "lx.save")
	a.mustCLI("save", "lxsave", img)
	tap.next(t, "stopped", linuxReply)
	time.Sleep(2 * time.Second)
	a.mustCLI("restore", img)
	tap.next(t, "started", linuxReply)
	con.drain()
	sendConsole(t, nc, a.host, id, linuxguest.CmdReadRTC)
	line := con.waitLine(t, linuxguest.HwclockPrefix, linuxReply)
	at := time.Now()
	rtc, err := linuxguest.ParseHwclock(line)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "hwclock -r after restore - (2030 + elapsed)", rtc.Sub(y2030.Add(at.Sub(t0))).Seconds(), 0.5, 2.5)
	setLinuxRTC(time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC))
	a.mustCLI("destroy", "lxsave")
}

// The image carries the live config: a disk hot-plugged live only (not in
// the persistent config) is in QEMU's migration stream, so the restored
// QEMU must have it too; restore defines the domain from the image.
func TestSaveRestoreHotpluggedDevice(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	defineTiny(t, a, "hps", utcVariable)
	a.mustCLI("start", "hps")
	dir := diskDir(t)
	disk := filepath.Join(dir, "usb.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a.mustCLI("attach-device", "hps", writeFile(t, dir, "usb.yaml", "kind: disk\nid: usb1\ntarget: sdb\npath: "+disk+"\nformat: raw\nbus: usb\n"), "--live")
	has := func(c domains.Config) bool {
		return slices.ContainsFunc(c.Disks, func(d domains.Disk) bool { return d.ID == "usb1" })
	}
	if has(configOf(t, a, "hps")) {
		t.Fatal("a live-only attach changed the persistent config")
	}
	img := filepath.Join(imagesDir(a), "hps.save")
	a.mustCLI("save", "hps", img)
	a.mustCLI("restore", img)
	d := infoOf(t, a, "hps")
	if d.State != domains.StateRunning || !has(d.LiveConfig()) {
		t.Fatalf("restored: %s, live config disks %+v", d.State, d.LiveConfig().Disks)
	}
	a.mustCLI("destroy", "hps")
}

// restartableAgent returns a starter of TCG agents that share one state
// and run directory (so the next one finds the guests and log of the one
// killed before it), with imgs allowed.
func restartableAgent(t *testing.T, imgs string) func() *agentProc {
	state, run := t.TempDir(), shortRunDir(t)
	return func() *agentProc {
		a := startAgentEnv(t, state, nil, "--accel", "tcg", "--run-dir", run, "--allow-dir", imgs)
		a.runDir = run
		return a
	}
}

// An agent killed during a save: the next agent records the job as
// interrupted, the guest is where its log says (paused by the save, and
// QEMU paused too), the image left has the partial magic and is refused,
// and the guest can be resumed.
func TestSaveInterruptedByAgentCrash(t *testing.T) {
	requireQEMU(t)
	imgs := t.TempDir()
	start := restartableAgent(t, imgs)
	a := start()
	id := defineTinyMem(t, a, "crash", 768)
	a.mustCLI("start", "crash")
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(a, id))), 3); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(imgs, "crash.save")
	a.mustCLI("save", "crash", img, "--detach")
	progressOf(t, natsConn(t, a), a.host, id)
	a.kill()

	b := start()
	out := b.mustCLI("history", "crash", "--json")
	if !strings.Contains(out, `"interrupted"`) {
		t.Fatalf("history after the crash has no interrupted job:\n%s", out)
	}
	d := infoOf(t, b, "crash")
	if d.State != domains.StatePaused || d.Job != nil {
		t.Fatalf("after the crash: %s (job %+v), want paused and no job", d.State, d.Job)
	}
	if _, errs, code := b.cli("save-image", "info", img); code == 0 {
		t.Fatalf("the interrupted save's image verifies: %s", errs)
	} else if _, err := os.Stat(img); err == nil && !strings.Contains(errs, "did not finish") {
		t.Fatalf("the interrupted save's image: %s", errs)
	}
	b.mustCLI("resume", "crash")
	if d := infoOf(t, b, "crash"); d.State != domains.StateRunning {
		t.Fatalf("after resume: %s", d.State)
	}
	b.mustCLI("destroy", "crash")
}

// SIGKILL of the agent while a restore feeds QEMU: the next agent records
// the job as interrupted and the log agrees with the processes (a QEMU
// whose incoming stream was cut is killed and its files removed, or one
// that had finished is adopted as running); either way the domain can then
// be started or destroyed, and the image is still whole for a new restore.
func TestRestoreInterruptedByAgentCrash(t *testing.T) {
	requireQEMU(t)
	imgs := t.TempDir()
	start := restartableAgent(t, imgs)
	a := start()
	id := defineTinyMem(t, a, "rcrash", 768)
	a.mustCLI("start", "rcrash")
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(a, id))), 5); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(imgs, "rcrash.save")
	a.mustCLI("save", "rcrash", img, "--no-progress")
	a.mustCLI("restore", img, "--detach")
	progressOf(t, natsConn(t, a), a.host, id)
	a.kill()

	b := start()
	if out := b.mustCLI("history", "rcrash", "--json"); !strings.Contains(out, `"interrupted"`) {
		t.Fatalf("history after the crash has no interrupted job:\n%s", out)
	}
	d := infoOf(t, b, "rcrash")
	if d.Job != nil {
		t.Fatalf("a job still runs after the restart: %+v", d.Job)
	}
	checkAgrees(t, b.runDir, id, d.State, d.Live, 0, 0)
	if d.State == domains.StateRunning {
		b.mustCLI("destroy", "rcrash")
	}
	if _, errs, code := b.cli("save-image", "info", img); code != 0 {
		t.Fatalf("the image is no longer whole after an interrupted restore: %s", errs)
	}
	b.mustCLI("restore", img, "--no-progress")
	if d := infoOf(t, b, "rcrash"); d.State != domains.StateRunning {
		t.Fatalf("after a second restore: %s", d.State)
	}
	checkAgrees(t, b.runDir, id, domains.StateRunning, infoOf(t, b, "rcrash").Live, 1, 0)
	b.mustCLI("destroy", "rcrash")
}
