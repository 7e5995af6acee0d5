package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Issue 15, point 1: the verbs a virsh user reaches for, run as the built
// binary against an agent with the tiny guest under QEMU (TCG).

// checkExitNoEvent runs a verb that must fail with code and append
// nothing; it returns stderr.
func checkExitNoEvent(t *testing.T, a *agentProc, code int, args ...string) string {
	t.Helper()
	before := lastSeqCLI(t, a)
	out, errs, got := a.cli(args...)
	if got != code {
		t.Fatalf("vmledger %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	if after := lastSeqCLI(t, a); after != before {
		t.Fatalf("vmledger %s failed but the log moved from seq %d to %d", strings.Join(args, " "), before, after)
	}
	return errs
}

// editorScript writes an $EDITOR that runs body on the file ("$1").
func editorScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// The config verbs: list's virsh flags and --state check, edit,
// setvcpus, setmem, domblklist, domiflist, domstate, autostart. Each
// change goes through define (validated); bad input exits 2 and records
// nothing; an unchanged edit records nothing and says so.
func TestVirshConfigVerbs(t *testing.T) {
	a := startAgent(t, t.TempDir())
	id := defineTiny(t, a, "vc", "{offset: utc}")
	defineTiny(t, a, "vd", "{offset: utc}")

	errs := checkExitNoEvent(t, a, 2, "list", "--state", "runing")
	for _, s := range domains.States() {
		if !strings.Contains(errs, string(s)) {
			t.Errorf("list --state runing: %q does not name state %q", errs, s)
		}
	}
	if out := a.mustCLI("list", "--state", "shut off", "--name"); out != "vc\nvd\n" {
		t.Errorf("list --name: %q", out)
	}
	if out := a.mustCLI("list", "--all", "--uuid"); !strings.HasPrefix(out, id+"\n") || strings.Count(out, "\n") != 2 {
		t.Errorf("list --all --uuid: %q", out)
	}
	if out := a.mustCLI("list", "--uuid", "--name"); !strings.HasPrefix(out, id+" vc\n") {
		t.Errorf("list --uuid --name: %q", out)
	}
	if out := a.mustCLI("list", "--state", "running", "--name"); out != "" {
		t.Errorf("list --state running: %q", out)
	}

	if out := a.mustCLI("domstate", "vc", "--reason"); out != "shut off\n" {
		t.Errorf("domstate: %q", out)
	}
	img := configOf(t, a, "vc").Disks[0].Path
	if out := a.mustCLI("domblklist", "vc"); !strings.Contains(out, "hda") || !strings.Contains(out, img) {
		t.Errorf("domblklist: %q", out)
	}
	if lines := strings.Split(a.mustCLI("domblklist", "vc", "--details"), "\n"); len(lines) < 2 || strings.Join(strings.Fields(lines[1]), " ") != "file disk hda "+img+" raw ide read-write" {
		t.Errorf("domblklist --details: %q", lines)
	}

	dir := t.TempDir()
	// The CLI runs $VISUAL, else $EDITOR; the children inherit these.
	env := func(editor string) { t.Setenv("VISUAL", ""); t.Setenv("EDITOR", editor) }
	// Unchanged: nothing recorded, exit 0.
	before := lastSeqCLI(t, a)
	env("true")
	out, errs, code := a.cli("edit", "vc")
	if code != 0 || !strings.Contains(out, "not changed") || lastSeqCLI(t, a) != before {
		t.Fatalf("edit, unchanged: exit %d, %q %q", code, out, errs)
	}
	// A typo: refused, named, kept, nothing recorded.
	typo := editorScript(t, dir, "typo.sh", `sed -i 's/^memory_mib:/memroy_mib:/' "$1"`)
	env(typo)
	out, errs, code = a.cli("edit", "vc")
	if code != 2 || !strings.Contains(errs, "memroy_mib") || !strings.Contains(errs, "kept in") || lastSeqCLI(t, a) != before {
		t.Fatalf("edit with a typo: exit %d, %q %q", code, out, errs)
	}
	// A real edit: a NIC added, one config-updated.
	addNIC := editorScript(t, dir, "nic.sh", `printf 'nics:\n- {id: net0, model: e1000, mode: none, mac: "52:54:00:12:34:56"}\n' >> "$1"`)
	env(addNIC)
	a.mustCLI("edit", "vc")
	if h := historyTypes(t, a, "vc", before); strings.Join(h, ",") != "config-updated" {
		t.Fatalf("edit recorded %v", h)
	}
	if out := a.mustCLI("domiflist", "vc"); !strings.Contains(out, "net0") || !strings.Contains(out, "e1000") || !strings.Contains(out, "52:54:00:12:34:56") {
		t.Errorf("domiflist: %q", out)
	}

	// A config changed by someone else during the edit is not overwritten.
	racer := editorScript(t, dir, "race.sh", `"`+binary+`" --nats-url "`+a.natsURL+`" --host `+a.host+` setmem vc 48M >/dev/null && sed -i 's/^vcpus: .*/vcpus: 3/' "$1"`)
	env(racer)
	out, errs, code = a.cli("edit", "vc")
	if c := configOf(t, a, "vc"); code != 4 || !strings.Contains(errs, "changed while") || !strings.Contains(errs, "kept in") || c.VCPUs != 1 || c.MemoryMiB != 48 {
		t.Fatalf("edit racing a setmem: exit %d, %q %q; config %+v", code, out, errs, c)
	}

	// setvcpus and setmem: for the next start, through define's checks.
	before = lastSeqCLI(t, a)
	a.mustCLI("setvcpus", "vc", "2", "--config")
	a.mustCLI("setmem", "vc", "32M")
	if c := configOf(t, a, "vc"); c.VCPUs != 2 || c.MemoryMiB != 32 || len(c.NICs) != 1 {
		t.Fatalf("after setvcpus/setmem: %+v", c)
	}
	if h := historyTypes(t, a, "vc", before); len(h) != 2 {
		t.Fatalf("setvcpus, setmem recorded %v", h)
	}
	if out := a.mustCLI("setvcpus", "vc", "2"); !strings.Contains(out, "not changed") {
		t.Errorf("setvcpus to the same count: %q", out)
	}
	var same domains.Result
	if err := json.Unmarshal([]byte(a.mustCLI("setmem", "vc", "32768", "--json")), &same); err != nil || len(same.Seqs) != 0 || same.Name != "vc" {
		t.Errorf("setmem to the same size, --json: %+v %v", same, err)
	}
	for _, bad := range [][]string{
		{"setvcpus", "vc", "0"}, {"setvcpus", "vc", "256"}, {"setvcpus", "vc", "two"},
		{"setvcpus", "vc", "2", "--live"},
		{"setmem", "vc", "1000"}, {"setmem", "vc", "16X"}, {"setmem", "vc", "2000000G"},
	} {
		checkExitNoEvent(t, a, 2, bad...)
	}

	// autostart: an event records the setting; a repeat records nothing.
	before = lastSeqCLI(t, a)
	a.mustCLI("autostart", "vc")
	if out := a.mustCLI("autostart", "vc"); !strings.Contains(out, "already") {
		t.Errorf("autostart twice: %q", out)
	}
	a.mustCLI("autostart", "vd")
	a.mustCLI("autostart", "vd", "--disable")
	if h := historyTypes(t, a, "vc", before); strings.Join(h, ",") != "autostart-set" {
		t.Fatalf("autostart recorded %v", h)
	}
	if out := a.mustCLI("info", "vc"); !strings.Contains(out, "Autostart:") {
		t.Errorf("info does not show autostart:\n%s", out)
	}
	if !infoOf(t, a, "vc").Autostart || infoOf(t, a, "vd").Autostart {
		t.Fatal("info: vc should autostart, vd not")
	}
	checkExitNoEvent(t, a, 3, "autostart", "nope")
}

// The guest verbs: vcpuinfo, domtime, qemu-monitor-command, reboot,
// domstate --reason, and autostart at the agent's next start.
func TestVirshGuestVerbs(t *testing.T) {
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTiny(t, a, "vg", "{offset: utc}")
	nc := natsConn(t, a)
	tap := tapEvents(t, nc, a.host, id)
	con := tapConsole(t, nc, a.host, id)
	a.mustCLI("setvcpus", "vg", "2")
	checkExitNoEvent(t, a, 4, "vcpuinfo", "vg")
	checkExitNoEvent(t, a, 4, "reboot", "vg")
	checkExitNoEvent(t, a, 4, "qemu-monitor-command", "vg", `{"execute":"query-status"}`)
	a.mustCLI("start", "vg")
	con.waitLine(t, guest.Banner, 60*time.Second)
	con.waitLine(t, "RTC ", 30*time.Second)
	if out := a.mustCLI("domstate", "vg", "--reason"); out != "running (booted)\n" {
		t.Errorf("domstate --reason: %q", out)
	}

	var vc api.VCPUReply
	if err := json.Unmarshal([]byte(a.mustCLI("vcpuinfo", "vg", "--json")), &vc); err != nil {
		t.Fatal(err)
	}
	pid := infoOf(t, a, "vg").Live.PID
	if len(vc.VCPUs) != 2 || vc.VCPUs[0].Thread == vc.VCPUs[1].Thread || vc.VCPUs[1].Index != 1 {
		t.Fatalf("vcpuinfo: %+v", vc)
	}
	for _, v := range vc.VCPUs {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(v.Thread))); err != nil || v.State == "" || v.HostCPU < 0 {
			t.Errorf("vCPU %d: thread %d is not a thread of QEMU %d, or has no state (%+v): %v", v.Index, v.Thread, pid, v, err)
		}
	}
	if out := a.mustCLI("vcpuinfo", "vg"); !strings.Contains(out, "VCPU:") || !strings.Contains(out, "CPU time:") {
		t.Errorf("vcpuinfo: %q", out)
	}

	// domtime follows the guest's own RTC change.
	y2033 := time.Date(2033, 3, 4, 5, 6, 7, 0, time.UTC)
	sendConsole(t, nc, a.host, id, guestTimeCmd(y2033))
	tap.next(t, "rtc-changed", 30*time.Second)
	var dt api.DomTimeReply
	if err := json.Unmarshal([]byte(a.mustCLI("domtime", "vg", "--json")), &dt); err != nil {
		t.Fatal(err)
	}
	if d := dt.GuestRTC.Sub(y2033); d < 0 || d > 2*time.Minute || dt.Offset != int64(dt.GuestRTC.Sub(dt.Host)/time.Second) {
		t.Fatalf("domtime after the guest set 2033-03-04 05:06:07: %+v", dt)
	}
	if out := a.mustCLI("domtime", "vg"); !strings.HasPrefix(strings.Join(strings.Fields(out), " "), "Guest RTC: 2033-03-04") {
		t.Errorf("domtime: %q", out)
	}

	// vcpuinfo and domtime are reads, open to the readonly identity; the
	// changing verbs are not.
	ro := func(args ...string) (string, string, int) {
		return runCLI(t, append([]string{"--nats-url", bareURL(a), "--host", a.host, "--nats-token-file", filepath.Join(state, "nats.token"),
			"--nats-identity", "readonly", "--timeout", "20s"}, args...)...)
	}
	for _, verb := range []string{"domtime", "vcpuinfo"} {
		if out, errs, code := ro(verb, "vg"); code != 0 || out == "" {
			t.Errorf("readonly %s: exit %d %q %s", verb, code, out, errs)
		}
	}
	for _, args := range [][]string{{"reboot", "vg"}, {"autostart", "vg"}, {"qemu-monitor-command", "vg", `{"execute":"query-status"}`}} {
		if _, errs, code := ro(args...); code == 0 || !strings.Contains(errs, "refused by the NATS server") {
			t.Errorf("readonly %v: exit %d %s, want a refusal by the server", args, code, errs)
		}
	}

	// qemu-monitor-command: recorded, taints; refused commands change nothing.
	out := a.mustCLI("qemu-monitor-command", "vg", `{"execute":"query-status"}`)
	if !strings.Contains(out, `"status":"running"`) {
		t.Fatalf("query-status: %q", out)
	}
	ev := tap.next(t, "qemu-monitor-command", 10*time.Second)
	var mc domains.MonitorCommand
	payload(t, ev, &mc)
	if mc.Execute != "query-status" || mc.Error != "" {
		t.Fatalf("recorded %+v", mc)
	}
	if d := infoOf(t, a, "vg"); d.Live == nil || strings.Join(d.Live.Taints, ",") != domains.TaintCustomMonitor {
		t.Fatalf("not tainted: %+v", d.Live)
	}
	if out := a.mustCLI("info", "vg"); !strings.Contains(out, "custom-monitor") {
		t.Errorf("info does not show the taint:\n%s", out)
	}
	// QEMU's own error reply is recorded too (the command reached QEMU).
	_, errs, code := a.cli("qemu-monitor-command", "vg", `{"execute":"query-nothing-such"}`)
	if code != 1 || !strings.Contains(errs, "query-nothing-such") {
		t.Fatalf("unknown QMP command: exit %d, %q", code, errs)
	}
	payload(t, tap.next(t, "qemu-monitor-command", 10*time.Second), &mc)
	if mc.Error == "" {
		t.Fatalf("QEMU's error not recorded: %+v", mc)
	}
	for _, refused := range []string{`{"execute":"quit"}`, `{"execute":"set-action","arguments":{"shutdown":"pause"}}`, `{"execute":`, strings.Repeat(" ", 17<<10) + "{}"} {
		checkExitNoEvent(t, a, 2, "qemu-monitor-command", "vg", refused)
	}
	if d := infoOf(t, a, "vg"); d.State != "running" || d.Live.PID != pid {
		t.Fatalf("after refused commands: %+v", d)
	}

	// reboot: the guest powers off on ACPI, the agent resets it: same QEMU.
	a.mustCLI("reboot", "vg")
	for _, typ := range []string{"shutdown", "reset", "resumed"} {
		tap.next(t, typ, 60*time.Second)
	}
	con.waitLine(t, guest.Banner, 60*time.Second)
	d := infoOf(t, a, "vg")
	if d.State != "running" || d.Reason != domains.ResumedReboot || d.Live.PID != pid {
		t.Fatalf("after reboot: state %s (%s), pid %d (was %d)", d.State, d.Reason, d.Live.PID, pid)
	}
	// The power-off after it is a power-off again: QEMU exits.
	a.mustCLI("shutdown", "vg")
	tap.next(t, "stopped", 60*time.Second)

	// autostart: the next agent starts the domain.
	a.mustCLI("autostart", "vg")
	a.stop()
	a = guestAgentIn(t, state, run, "tcg")
	if d := infoOf(t, a, "vg"); d.State != "running" || d.Live == nil || len(d.Live.Taints) != 0 {
		t.Fatalf("after an agent start with autostart: %+v", d)
	}
	a.mustCLI("destroy", "vg")
}

// historyTypes is the types of a domain's events after seq.
func historyTypes(t *testing.T, a *agentProc, name string, after uint64) []string {
	t.Helper()
	out := a.mustCLI("history", name, "--json", "--after", strconv.FormatUint(after, 10))
	var types []string
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e plainEvent
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	return types
}

// setmem's SIZE is virsh's: KiB by default, or with a unit.
func TestParseMemSize(t *testing.T) {
	for _, c := range []struct {
		in  string
		mib uint64
		ok  bool
	}{
		{"1048576", 1024, true}, {"512M", 512, true}, {"512MiB", 512, true}, {"2G", 2048, true},
		{"2g", 2048, true}, {"1T", 1 << 20, true}, {"1024K", 1, true}, {"1048576KB", 1000, true},
		{"1000", 0, false}, {"0M", 0, false}, {"", 0, false}, {"M", 0, false}, {"12X", 0, false},
		{"-1G", 0, false}, {"1.5G", 0, false}, {"99999999999999G", 0, false},
	} {
		mib, err := parseMemSize(c.in)
		if (err == nil) != c.ok || mib != c.mib {
			t.Errorf("%q: %d, %v; want %d (ok %v)", c.in, mib, err, c.mib, c.ok)
		}
	}
}

// A reboot the last agent left half done (the guest powered off while
// QEMU was told to pause on power-off, and no agent saw it) is finished by
// the next agent's recovery and recorded: shutdown, reset, resumed.
func TestRebootFinishedAtRecovery(t *testing.T) {
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTiny(t, a, "vr", "{offset: utc}")
	con := tapConsole(t, natsConn(t, a), a.host, id)
	a.mustCLI("start", "vr")
	con.waitLine(t, "RTC ", 60*time.Second) // booted: the guest heeds the power button
	pid := infoOf(t, a, "vr").Live.PID
	before := lastSeqCLI(t, a)
	a.stop()

	// With the agent away, do what a reboot does up to the guest's power-off.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mon, err := qmp.Dial(ctx, "unix", filepath.Join(run, id, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Execute(ctx, "set-action", map[string]string{"shutdown": "pause"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := mon.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := mon.QueryStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == "shutdown" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mon.Close()

	a = guestAgentIn(t, state, run, "tcg")
	if h := historyTypes(t, a, "vr", before); strings.Join(h, ",") != "shutdown,reset,resumed" {
		t.Fatalf("recovery recorded %v, want shutdown,reset,resumed", h)
	}
	if d := infoOf(t, a, "vr"); d.State != "running" || d.Live.PID != pid || d.Reason != domains.ResumedReboot {
		t.Fatalf("after recovery: %s (%s), pid %d (was %d)", d.State, d.Reason, d.Live.PID, pid)
	}
	// QEMU exits on power-off again (once the guest is up: before, it
	// does not heed the button).
	tapConsole(t, natsConn(t, a), a.host, id).waitLine(t, "RTC ", 60*time.Second)
	a.mustCLI("shutdown", "vr")
	waitState(t, a, "vr", "shut off", 60*time.Second)
}

func waitState(t *testing.T, a *agentProc, name, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d := infoOf(t, a, name)
		if string(d.State) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s after %s, want %s", name, d.State, within, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
