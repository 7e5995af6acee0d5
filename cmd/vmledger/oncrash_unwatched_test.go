package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// Issue 11, point 3: a guest that panics while no agent runs is kept in
// QEMU's guest-panicked state (RAM intact); the next agent finds it so at
// reattach, records crashed and applies on_crash: coredump-restart writes
// the dump and the guest runs again. Before, the next agent saw a paused
// QEMU and left it so.
func TestOnCrashWhileNoAgent(t *testing.T) {
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTinyWith(t, a, "unw", 16, "on_crash: coredump-restart\n")
	con := tapConsole(t, natsConn(t, a), a.host, id)
	a.mustCLI("start", "unw")
	con.waitLine(t, "RTC ", 60*time.Second)
	before := lastSeqCLI(t, a)
	a.stop()

	conn, err := net.Dial("unix", filepath.Join(run, id, "serial.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(guest.CmdPanic)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitQEMUStatus(t, filepath.Join(run, id, "qmp.sock"), "guest-panicked")

	a = guestAgentIn(t, state, run, "tcg")
	want := []string{"crashed", "job-started", "dump-started", "dump-completed", "job-completed", "stopped", "started"}
	var types []string
	var dump string
	for deadline := time.Now().Add(2 * time.Minute); ; {
		types, dump = historySince(t, a, "unw", before)
		if len(types) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("events after the unwatched panic %v, want %v", types, want)
	}
	if filepath.Dir(dump) != filepath.Join(state, "dumps") {
		t.Fatalf("on_crash dump at %q, want it in %s/dumps", dump, state)
	}
	f, err := coredump.OpenFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if d := infoOf(t, a, "unw"); d.State != domains.StateRunning {
		t.Fatalf("state %s, want running", d.State)
	}
}

// waitQEMUStatus asks QEMU itself (the agent is away) until its run state
// is want.
func waitQEMUStatus(t testing.TB, sock, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mon, err := qmp.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	for {
		st, err := mon.QueryStatus(ctx)
		if err != nil {
			t.Fatalf("QEMU's status: %v", err)
		}
		if st.Status == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("QEMU stays %q, want %q", st.Status, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// historyAfter returns the domain's events after seq, from the CLI.
func historyAfter(t testing.TB, a *agentProc, name string, seq uint64) []plainEvent {
	t.Helper()
	out := a.mustCLI("history", name, "--json", "--after", strconv.FormatUint(seq, 10))
	var evs []plainEvent
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e plainEvent
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// historySince returns the types of the domain's events after seq, and the
// path of the last dump-completed among them.
func historySince(t testing.TB, a *agentProc, name string, seq uint64) ([]string, string) {
	t.Helper()
	var types []string
	var dump string
	for _, e := range historyAfter(t, a, name, seq) {
		types = append(types, e.Type)
		if e.Type == "dump-completed" {
			var p domains.DumpCompleted
			payload(t, e, &p)
			dump = p.Path
		}
	}
	return types, dump
}
