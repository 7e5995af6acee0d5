package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/migrate/pagemix"
)

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

// Acceptance c: job abort during perform (the stream capped at 1 MiB/s
// over 12 MiB of page mix, so there is time): the source cancels and the
// guest runs on there, its RAM intact; the destination tears down, drops
// the definition it made and leaves no QEMU; job-failed says aborted; a
// migration afterwards goes through; with --keep-source alpha keeps a
// definition it may not start, until the guest migrates back (epoch 2).
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
	waitNoQEMU(t, dst, 10*time.Second)
	// Clean enough to go again, keeping the source's definition: alpha
	// keeps a record it does not own and may not start.
	src.mustCLI("migrate", "ab", "--to", "beta", "--no-progress", "--keep-source")
	if d := infoOf(t, dst, "ab"); d.State != domains.StateRunning || d.Migration.Epoch != 1 {
		t.Fatalf("beta after the second migration: %s %+v", d.State, d.Migration)
	}
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(dst, id))), seed); err != nil {
		t.Fatalf("RAM on beta: %v", err)
	}
	if d := infoOf(t, src, "ab"); d.State != domains.StateShutoff || d.OwnedHere() {
		t.Fatalf("alpha's kept definition: %s, migration %+v", d.State, d.Migration)
	}
	if out := src.mustCLI("info", "ab"); !strings.Contains(out, "source confirmed, peer beta, epoch 1 (not owned here)") {
		t.Fatalf("info of the kept definition on alpha:\n%s", out)
	}
	if _, errs, code := src.cli("start", "ab"); code != exitConflict || !strings.Contains(errs, "not owned") {
		t.Fatalf("start of the kept definition on alpha: exit %d, want %d (not owned)\n%s", code, exitConflict, errs)
	}
	// Back to alpha: the grant of epoch 2 gives it ownership again.
	dst.mustCLI("migrate", "ab", "--to", "alpha", "--no-progress")
	if d := infoOf(t, src, "ab"); d.State != domains.StateRunning || !d.OwnedHere() || d.Migration.Epoch != 2 {
		t.Fatalf("alpha after the migration back: %s, migration %+v", d.State, d.Migration)
	}
	if err := pagemix.Default.Verify(guestArea(mapRAM(t, ramPath(src, id))), seed); err != nil {
		t.Fatalf("RAM back on alpha: %v", err)
	}
	src.mustCLI("destroy", "ab")
}

// Acceptance b (two of the four phases; the destination agent killed in
// finish and a NATS node killed are the JetStream branch's): the
// destination's QEMU killed in prepare (a wrapper kills the -incoming QEMU
// as soon as it started, while the marker file exists), and the stream cut
// in perform (the destination's QEMU killed mid-stream at 1 MiB/s). The
// guest runs on the source only, no QEMU is left on the destination, and
// job-failed says why.
func TestMigrateFailures(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "kill-incoming")
	real, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := writeFile(t, dir, "qemu", "#!/bin/sh\n"+
		"case \"$*\" in *-incoming*) if [ -e "+marker+" ]; then "+real+" \"$@\" & pid=$!; kill -KILL $pid; wait $pid; exit 137; fi;; esac\n"+
		"exec "+real+" \"$@\"\n")
	if err := os.Chmod(wrapper, 0o700); err != nil {
		t.Fatal(err)
	}
	p := startMigrationPairWith(t, "tcg", nil, []string{"--qemu", wrapper})

	t.Run("refused with nothing recorded", func(t *testing.T) {
		defineTiny(t, p.src, "stopped1", utcVariable)
		runFilled(t, p, "rf", 1)
		before := [2]uint64{lastSeqCLI(t, p.src), lastSeqCLI(t, p.dst)}
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"nosuch", "--to", "beta"}, exitNotFound, "not found"},
			{[]string{"stopped1", "--to", "beta"}, exitConflict, "shut off"},
			{[]string{"rf"}, exitUsage, "--to"},
			{[]string{"rf", "--to", "alpha"}, exitUsage, "this host"},
			{[]string{"rf", "--to", "be ta"}, exitUsage, "host name"},
			{[]string{"rf", "--to", "beta", "--listen", "beta.example"}, exitUsage, "IP address"},
			{[]string{"rf", "--to", "beta", "--bandwidth", "-1"}, exitUsage, "negative"},
			{[]string{"rf", "--to", "gamma"}, exitUnavailable, "gamma"},
		} {
			_, errs, code := p.src.cli(append([]string{"migrate"}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Errorf("migrate %v: exit %d, want %d with %q\n%s", c.args, code, c.code, c.want, errs)
			}
		}
		if after := [2]uint64{lastSeqCLI(t, p.src), lastSeqCLI(t, p.dst)}; after != before {
			t.Fatalf("refused migrations appended events: last seqs %v, before %v", after, before)
		}
		p.src.mustCLI("destroy", "rf")
	})
	t.Run("destination QEMU killed in prepare", func(t *testing.T) {
		id, con := runFilled(t, p, "kp", 5)
		writeFile(t, dir, "kill-incoming", "")
		defer os.Remove(marker)
		if _, errs, code := p.src.cli("migrate", "kp", "--to", "beta", "--bandwidth", "1", "--no-progress"); code == 0 || !strings.Contains(errs, "failed") {
			t.Fatalf("migrate with the destination's QEMU killed: exit %d\n%s", code, errs)
		}
		failsOver(t, p, id, "kp", con, 5, "beta")
		p.src.mustCLI("destroy", "kp")
	})
	t.Run("stream cut in perform", func(t *testing.T) {
		id, con := runFilled(t, p, "cut", 6)
		p.src.mustCLI("migrate", "cut", "--to", "beta", "--bandwidth", "1", "--detach")
		waitJobSent(t, p.src, "cut", 60*time.Second)
		if n := killQEMUs(t, p.dst); n != 1 {
			t.Fatalf("%d QEMUs on beta mid-stream, want 1", n)
		}
		failsOver(t, p, id, "cut", con, 6, "perform")
		p.src.mustCLI("destroy", "cut")
	})
}
