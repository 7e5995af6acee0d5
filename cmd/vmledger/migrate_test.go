package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

// inOrder checks that evs hold events of these types in this order
// (others between are allowed) and returns them.
func inOrder(t testing.TB, host string, evs []domains.Event, types ...domains.Type) []domains.Event {
	t.Helper()
	var out []domains.Event
	i := 0
	for _, e := range evs {
		if i < len(types) && e.Type == types[i] {
			out = append(out, e)
			i++
		}
	}
	if i < len(types) {
		t.Fatalf("%s's log: %s\nwant in order: %v", host, typesOf(evs), types)
	}
	return out
}

// Acceptance a: a running tiny guest whose RTC was set to 2030-01-01 and
// which has a USB disk hot-plugged migrates from alpha to beta (two agents
// on a three-node cluster of Debian's nats-server): on beta it prints
// 2030-01-01 plus the elapsed seconds, its RAM (a page mix written
// through alpha's memory file) is byte-identical, it has the disk; both
// logs hold the migration's states in order, a plain nats.go subscriber
// sees them, and the definition moved.
func TestMigrateLive(t *testing.T) {
	p := startMigrationPair(t, "tcg")
	src, dst := p.src, p.dst
	id := defineTiny(t, src, "mig", utcVariable)
	srcTap := tapEvents(t, p.nc, "alpha", id)
	dstTap := tapEvents(t, p.nc, "beta", id)
	con := tapConsole(t, p.nc, "alpha", id)
	src.mustCLI("start", "mig")
	con.waitLine(t, "RTC ", 60*time.Second)
	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	adj := setRTC(t, src, srcTap, id, "mig", y2030)
	usbImg := filepath.Join(diskDir(t), "usb.img")
	if err := os.WriteFile(usbImg, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	src.mustCLI("attach-device", "mig", writeFile(t, t.TempDir(), "usb.yaml", "kind: disk\nid: usb1\ntarget: sdb\npath: "+usbImg+"\nformat: raw\nbus: usb\n"))
	const seed = 2030
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
		t.Fatal(err)
	}
	dcon := tapConsole(t, p.nc, "beta", id)

	out := src.mustCLI("migrate", "mig", "--to", "beta", "--listen", "127.0.0.1", "--no-progress")
	if !strings.Contains(out, "migrated to beta") {
		t.Fatalf("migrate: %s", out)
	}
	rtc, at := readRTC(t, dcon)
	near(t, "guest RTC on beta - (2030 + elapsed)", rtc.Sub(y2030.Add(at.Sub(t0))).Seconds(), 0, 2)
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(dst, id))), seed); err != nil {
		t.Fatalf("RAM on beta: %v", err)
	}
	d := infoOf(t, dst, "mig")
	if d.State != domains.StateRunning || d.Reason != domains.StartMigrated || d.Config.Clock.Adjustment != adj ||
		d.Migration == nil || d.Migration.Phase != domains.MigFinished || d.Migration.Epoch != 1 {
		t.Fatalf("on beta: %s (%s), clock %+v, migration %+v", d.State, d.Reason, d.Config.Clock, d.Migration)
	}
	if !strings.Contains(dst.mustCLI("config", "mig", "--live"), "usb1") {
		t.Fatalf("beta's QEMU config lacks the hot-plugged disk")
	}
	if out := src.mustCLI("list"); strings.Contains(out, "mig") {
		t.Fatalf("alpha still defines the domain:\n%s", out)
	}
	if len(qemusIn(src.runDir)) != 0 {
		t.Fatalf("a QEMU is left on alpha: %v", qemusIn(src.runDir))
	}

	// Both logs, in order; the recoveries are absent.
	sl := waitPath(t, p.nc, "alpha", id, "idle>begun>performing>handed-off>confirmed", 10*time.Second)
	evs := inOrder(t, "alpha", sl, domains.TypeJobStarted, domains.TypeMigrationState, domains.TypeMigrationState,
		domains.TypeMigrationState, domains.TypeMigrationState, domains.TypeStopped, domains.TypeJobCompleted, domains.TypeUndefined)
	if st := evs[5].Payload.(domains.Stopped); st.Reason != domains.StopMigrated {
		t.Fatalf("alpha: stopped %+v, want migrated", st)
	}
	if ms := evs[3].Payload.(domains.MigrationState); ms.To != string(domains.MigHandedOff) || ms.Epoch != 1 || ms.Peer != "beta" {
		t.Fatalf("alpha's hand-off: %+v, want epoch 1 to beta", ms)
	}
	dl := waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>finishing>finished", 10*time.Second)
	evs = inOrder(t, "beta", dl, domains.TypeDefined, domains.TypeJobStarted, domains.TypeMigrationState, domains.TypeMigrationState,
		domains.TypeMigrationState, domains.TypeStarted, domains.TypeMigrationState, domains.TypeJobCompleted)
	if st := evs[5].Payload.(domains.Started); st.Reason != domains.StartMigrated {
		t.Fatalf("beta: started %+v, want migrated", st)
	}
	// The plain subscriber saw the same transitions on each host.
	for _, c := range []struct {
		tap  *eventTap
		want string
	}{{srcTap, "idle>begun>performing>handed-off>confirmed"}, {dstTap, "idle>preparing>prepared>finishing>finished"}} {
		deadline := time.Now().Add(10 * time.Second)
		for tapPath(c.tap) != c.want && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := tapPath(c.tap); got != c.want {
			t.Fatalf("nats.go subscriber saw %q, want %q", got, c.want)
		}
	}
	dst.mustCLI("destroy", "mig")
}

// waitJobSent waits until the domain's job reports stream bytes sent.
func waitJobSent(t testing.TB, a *agentProc, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var r struct {
			Job *domains.JobInfo `json:"job"`
		}
		if err := json.Unmarshal([]byte(a.mustCLI("job", "info", name, "--json")), &r); err != nil {
			t.Fatal(err)
		}
		if r.Job != nil && r.Job.Progress != nil && r.Job.Progress.Done > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bytes sent by %s's job within %s: %+v", name, within, r.Job)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Acceptance c: job abort during perform (the stream capped at 1 MiB/s
// over 12 MiB of page mix, so there is time): the source cancels and the
// guest runs on there, its RAM intact; the destination tears down, drops
// the definition it made and leaves no QEMU; job-failed says aborted; a
// migration afterwards goes through.
func TestMigrateAbort(t *testing.T) {
	p := startMigrationPair(t, "tcg")
	src, dst := p.src, p.dst
	id := defineTiny(t, src, "ab", utcVariable)
	con := tapConsole(t, p.nc, "alpha", id)
	src.mustCLI("start", "ab")
	con.waitLine(t, "RTC ", 60*time.Second)
	const seed = 77
	if _, err := pagemix.Default.Fill(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
		t.Fatal(err)
	}
	src.mustCLI("migrate", "ab", "--to", "beta", "--bandwidth", "1", "--detach")
	waitJobSent(t, src, "ab", 60*time.Second)
	if out := src.mustCLI("job", "abort", "ab"); !strings.Contains(out, "aborted") {
		t.Fatalf("job abort: %s", out)
	}
	sl := waitPath(t, p.nc, "alpha", id, "idle>begun>performing>cancelled!", 30*time.Second)
	evs := inOrder(t, "alpha", sl, domains.TypeJobStarted, domains.TypeJobFailed)
	if jf := evs[1].Payload.(domains.JobFailed); jf.Reason != domains.JobAborted || jf.Kind != domains.JobMigrate {
		t.Fatalf("alpha: job-failed %+v, want migrate aborted", jf)
	}
	dl := waitPath(t, p.nc, "beta", id, "idle>preparing>prepared>torn-down!", 30*time.Second)
	inOrder(t, "beta", dl, domains.TypeDefined, domains.TypeJobStarted, domains.TypeJobFailed, domains.TypeUndefined)
	// The guest runs on alpha only.
	if d := infoOf(t, src, "ab"); d.State != domains.StateRunning || !d.OwnedHere() {
		t.Fatalf("alpha after the abort: %s, migration %+v", d.State, d.Migration)
	}
	readRTC(t, con)
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
		t.Fatalf("RAM on alpha after the abort: %v", err)
	}
	if out := dst.mustCLI("list"); strings.Contains(out, "ab") {
		t.Fatalf("beta still defines the domain:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(qemusIn(dst.runDir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if q := qemusIn(dst.runDir); len(q) > 0 {
		t.Fatalf("QEMU left on beta: %v", q)
	}
	// Clean enough to go again.
	src.mustCLI("migrate", "ab", "--to", "beta", "--no-progress")
	if d := infoOf(t, dst, "ab"); d.State != domains.StateRunning || d.Migration.Epoch != 1 {
		t.Fatalf("beta after the second migration: %s %+v", d.State, d.Migration)
	}
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(dst, id))), seed); err != nil {
		t.Fatalf("RAM on beta: %v", err)
	}
	dst.mustCLI("destroy", "ab")
}
