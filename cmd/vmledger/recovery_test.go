package main

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// Issue 7, defect 5: SIGKILL the agent at random points of a start, 20
// times. After each restart the log agrees with the processes (a QEMU
// runs exactly when the log says running, and it is the recorded one; no
// stray QEMU of this run directory, no run files of a stopped guest), and
// the domain can be started or destroyed.
func TestAgentKilledDuringStart(t *testing.T) {
	if testing.Short() {
		t.Skip("20 kill rounds with a real QEMU")
	}
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTiny(t, a, "sk", "{offset: utc}")
	body, err := json.Marshal(api.DomainRequest{Domain: "sk"})
	if err != nil {
		t.Fatal(err)
	}
	subject := "vmledger.cmd." + a.host + "." + api.VerbStart

	// The start window here: from the request to its reply.
	nc := natsConn(t, a)
	t0 := time.Now()
	if _, err := nc.Request(subject, body, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	window := time.Since(t0)
	a.mustCLI("destroy", "sk")
	nc.Close()

	seen := map[string]int{}
	for round := 0; round < 20; round++ {
		nc, err := nats.Connect(a.natsURL, nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		// Up to a quarter past the window, so that some rounds kill after
		// the reply, too.
		delay := time.Duration(rand.Int64N(int64(window) * 5 / 4))
		if err := nc.PublishRequest(subject, nats.NewInbox(), body); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		a.kill()
		nc.Close()

		a = guestAgentIn(t, state, run, "tcg")
		d := infoOf(t, a, "sk")
		seen[string(d.State)]++
		checkAgrees(t, run, id, d.State, d.Live, round, delay)
		if d.State == domains.StateShutoff {
			a.mustCLI("start", "sk")
			checkAgrees(t, run, id, domains.StateRunning, infoOf(t, a, "sk").Live, round, delay)
		}
		a.mustCLI("destroy", "sk")
		checkAgrees(t, run, id, domains.StateShutoff, nil, round, delay)
	}
	t.Logf("start window %v; states found after the restarts: %v", window, seen)
}

// checkAgrees fails unless the QEMUs of run match what the log says of
// domain id: exactly the recorded one when running, none (and none of its
// run files) when shut off.
func checkAgrees(t *testing.T, run, id string, state domains.State, live *domains.Live, round int, delay time.Duration) {
	t.Helper()
	pids := qemusOf(t, run)
	where := "round " + strconv.Itoa(round) + " (kill after " + delay.String() + ")"
	switch state {
	case domains.StateRunning:
		if live == nil || len(pids) != 1 || pids[0] != live.PID {
			t.Fatalf("%s: log says running as %+v, QEMUs of the run dir: %v", where, live, pids)
		}
	case domains.StateShutoff:
		if len(pids) != 0 {
			t.Fatalf("%s: log says shut off, QEMUs of the run dir: %v", where, pids)
		}
		assertNoRunFiles(t, filepath.Join(run, id), where)
	default:
		t.Fatalf("%s: state %q", where, state)
	}
}

// qemusOf lists the live processes whose command line names the run
// directory (a zombie's command line is empty).
func qemusOf(t testing.TB, run string) []int {
	t.Helper()
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), run+"/") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// assertNoRunFiles: a stopped guest leaves no sockets, pid file or RAM.
func assertNoRunFiles(t *testing.T, dir, where string) {
	t.Helper()
	for _, f := range []string{"qmp.sock", "serial.sock", "qemu.pid", "guest.ram"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s left in %s (%v)", where, f, dir, err)
		}
	}
}

// Issue 7, defect 14: a QEMU that dies while the agent is down is
// recorded as crashed at the next start, and its RAM file, pid file and
// sockets are removed, as when it dies while the agent runs.
func TestGuestDiedWhileAgentDown(t *testing.T) {
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTiny(t, a, "gone", "{offset: utc}")
	a.mustCLI("start", "gone")
	pid := infoOf(t, a, "gone").Live.PID
	a.stop()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; len(qemusOf(t, run)) > 0; i++ {
		if i > 1000 {
			t.Fatal("QEMU did not die")
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertFile := filepath.Join(run, id, "guest.ram")
	if _, err := os.Stat(assertFile); err != nil {
		t.Fatalf("the dead QEMU's RAM file should still be there before the restart: %v", err)
	}

	a = guestAgentIn(t, state, run, "tcg")
	if d := infoOf(t, a, "gone"); d.State != domains.StateShutoff {
		t.Fatalf("after restart: %s, want shut off", d.State)
	}
	out := a.mustCLI("history", "gone", "--json", "--type", "stopped")
	if !strings.Contains(out, `"crashed"`) {
		t.Fatalf("no stopped(crashed) in the history: %s", out)
	}
	assertNoRunFiles(t, filepath.Join(run, id), "after restart")
	a.mustCLI("start", "gone")
	a.mustCLI("destroy", "gone")
}
