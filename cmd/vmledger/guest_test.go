package main

import (
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// Issue 3, acceptance a: the tiny guest boots under KVM and, separately,
// under forced TCG; its serial lines reach the test through the agent.
func TestGuestBootsKVM(t *testing.T) {
	if !kvmUsable() {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but /dev/kvm does not open")
		}
		t.Skip("/dev/kvm does not open")
	}
	bootAndRead(t, "kvm", 180*time.Second) // SeaBIOS is slow under nested KVM
}

func TestGuestBootsTCG(t *testing.T) { bootAndRead(t, "tcg", 60*time.Second) }

func bootAndRead(t testing.TB, accel string, within time.Duration) {
	a := guestAgent(t, t.TempDir(), accel)
	id := defineTiny(t, a, "boot-"+accel, "{offset: utc}")
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "boot-"+accel)
	started := tap.next(t, "started", 5*time.Second)
	var sp struct{ Reason, Accel string }
	_ = json.Unmarshal(started.Payload, &sp)
	if sp.Reason != "booted" || sp.Accel != accel {
		t.Fatalf("started payload %s, want booted under %s", started.Payload, accel)
	}
	if d := infoOf(t, a, "boot-"+accel); d.Live == nil || d.Live.Accel != accel || d.State != "running" {
		t.Fatalf("info: %+v", d)
	}
	first, err := guest.ParseRTC(con.waitLine(t, "RTC ", within))
	if err != nil {
		t.Fatal(err)
	}
	second, err := guest.ParseRTC(con.waitLine(t, "RTC ", 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d := second.Sub(first); d < time.Second || d > 3*time.Second {
		t.Fatalf("RTC lines %s then %s: want about a second apart", first, second)
	}
	if off := time.Since(first); off < -5*time.Second || off > 60*time.Second {
		t.Fatalf("utc clock guest reads %s, host %s", first, time.Now().UTC())
	}
	a.mustCLI("destroy", "boot-"+accel)
	tap.next(t, "stopped", 10*time.Second)
}

func payload(t testing.TB, e plainEvent, v any) {
	t.Helper()
	if err := json.Unmarshal(e.Payload, v); err != nil {
		t.Fatalf("%s payload %s: %v", e.Type, e.Payload, err)
	}
}

type rtcPayload struct {
	Offset     int64 `json:"offset"`
	Adjustment int64 `json:"adjustment"`
}

func near(t testing.TB, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Fatalf("%s = %.0f, want %.0f ± %.0f", what, got, want, tol)
	}
}

// setRTC has the guest set its RTC and checks the recorded adjustment.
func setRTC(t testing.TB, a *agentProc, tap *eventTap, id, name string, target time.Time) int64 {
	t.Helper()
	nc := natsConn(t, a)
	t0 := time.Now()
	sendConsole(t, nc, a.host, id, guestTimeCmd(target))
	ev := tap.next(t, "rtc-changed", 2*time.Second)
	if lat := ev.got.Sub(t0); lat > 2*time.Second {
		t.Fatalf("rtc-changed after %s", lat)
	}
	var p rtcPayload
	payload(t, ev, &p)
	near(t, "adjustment", float64(p.Adjustment), target.Sub(t0).Seconds(), 2)
	if c := configOf(t, a, name); c.Clock.Adjustment != p.Adjustment || c.Clock.Basis != "utc" {
		t.Fatalf("config clock %+v, want adjustment %d basis utc", c.Clock, p.Adjustment)
	}
	return p.Adjustment
}

func guestTimeCmd(at time.Time) string { return "T " + at.UTC().Format("20060102150405") }

// restartAndRead destroys and starts the domain and returns the first RTC
// the guest prints, with when it was read.
func restartAndRead(t testing.TB, a *agentProc, con *consoleTap, name string) (time.Time, time.Time) {
	t.Helper()
	a.mustCLI("destroy", name)
	for len(con.lines) > 0 {
		<-con.lines
	}
	a.mustCLI("start", name)
	line := con.waitLine(t, "RTC ", 60*time.Second)
	at := time.Now()
	rtc, err := guest.ParseRTC(line)
	if err != nil {
		t.Fatal(err)
	}
	return rtc, at
}

// Issue 3, acceptance b: the guest moves its RTC; the event carries the
// new absolute adjustment, the config keeps it across destroy and start,
// and a second change is not double counted.
func TestGuestClockVariableUTC(t *testing.T) {
	clockScenario(t, "{offset: variable, adjustment: 0, basis: utc}", nil, func(first time.Time, at time.Time) {
		near(t, "first RTC - now", first.Sub(at.UTC()).Seconds(), 0, 2)
	})
}

// Issue 3, acceptance c: the same with basis localtime, the agent and QEMU
// in a zone other than UTC (+05:30, no DST).
func TestGuestClockVariableLocaltime(t *testing.T) {
	ist, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatalf("tzdata missing: %v", err)
	}
	clockScenario(t, "{offset: variable, adjustment: 60, basis: localtime}", []string{"TZ=Asia/Kolkata"}, func(first time.Time, at time.Time) {
		// The guest's RTC shows Kolkata wall time plus the adjustment.
		_, zone := at.In(ist).Zone()
		near(t, "first RTC - UTC now", first.Sub(at.UTC()).Seconds(), float64(zone+60), 2)
	})
}

func clockScenario(t testing.TB, clock string, env []string, checkFirst func(first, at time.Time)) {
	a := guestAgent(t, t.TempDir(), "tcg", env...)
	id := defineTiny(t, a, "clk", clock)
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	a.mustCLI("start", "clk")
	line := con.waitLine(t, "RTC ", 60*time.Second)
	first, err := guest.ParseRTC(line)
	if err != nil {
		t.Fatal(err)
	}
	checkFirst(first, time.Now())

	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	setRTC(t, a, tap, id, "clk", y2030)

	rtc, at := restartAndRead(t, a, con, "clk")
	near(t, "guest RTC after restart - (2030 + elapsed)", rtc.Sub(y2030.Add(at.Sub(t0))).Seconds(), 0, 2)

	// A second change: QEMU reports it relative to the new start's base.
	setRTC(t, a, tap, id, "clk", time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC))
	a.mustCLI("destroy", "clk")
}

// Issue 3, acceptance d: each lifecycle verb yields the right event and
// reason; illegal ones get a clear error and no event; QEMU's death, a
// guest panic and a guest power-off are recorded.
func TestGuestLifecycle(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTiny(t, a, "life", "{offset: utc}")
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	tap := tapEvents(t, nc, a.host, id)
	reason := func(e plainEvent) string {
		var p struct {
			Reason string `json:"reason"`
			Guest  bool   `json:"guest"`
		}
		payload(t, e, &p)
		return p.Reason
	}
	expect := func(typ, why string) {
		t.Helper()
		e := tap.next(t, typ, 10*time.Second)
		if r := reason(e); r != why {
			t.Fatalf("%s reason %q, want %q", typ, r, why)
		}
	}
	noEvent := func(args ...string) {
		t.Helper()
		before := lastSeqCLI(t, a)
		checkExit(t, a, 4, args...)
		if after := lastSeqCLI(t, a); after != before {
			t.Fatalf("%v appended events (%d -> %d)", args, before, after)
		}
	}
	boot := func() {
		t.Helper()
		// Lines of the previous boot may still be queued: a stale RTC line
		// would let the test type before the new guest's console is bridged.
		con.drain()
		a.mustCLI("start", "life")
		expect("started", "booted")
		con.waitLine(t, "RTC ", 60*time.Second)
	}

	noEvent("resume", "life") // shut off
	noEvent("suspend", "life")
	noEvent("destroy", "life")
	boot()
	noEvent("start", "life") // running
	noEvent("resume", "life")
	a.mustCLI("suspend", "life")
	expect("paused", "user")
	if d := infoOf(t, a, "life"); d.State != "paused" {
		t.Fatalf("state %q after suspend", d.State)
	}
	noEvent("suspend", "life")
	noEvent("start", "life")
	a.mustCLI("resume", "life")
	expect("resumed", "user")
	a.mustCLI("reset", "life")
	if e := tap.next(t, "reset", 10*time.Second); !strings.Contains(string(e.Payload), `"guest":false`) {
		t.Fatalf("reset payload %s", e.Payload)
	}
	a.mustCLI("destroy", "life")
	expect("stopped", "destroyed")

	// The guest powers itself off: shutdown (guest) then stopped (shutdown).
	boot()
	sendConsole(t, nc, a.host, id, "P")
	expect("shutdown", "guest")
	expect("stopped", "shutdown")

	// The ACPI power button (vmledger shutdown): the guest obeys.
	boot()
	a.mustCLI("shutdown", "life")
	expect("shutdown", "guest")
	expect("stopped", "shutdown")

	// A guest panic (pvpanic): crashed, then QEMU ends: stopped (crashed).
	boot()
	sendConsole(t, nc, a.host, id, "X")
	expect("crashed", "guest-panicked")
	expect("stopped", "crashed")

	// QEMU killed from outside: stopped (crashed) within a second.
	boot()
	pid := infoOf(t, a, "life").Live.PID
	if pid <= 0 {
		t.Fatal("no QEMU pid in info")
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := tap.next(t, "stopped", 5*time.Second)
	if r := reason(e); r != "crashed" {
		t.Fatalf("stopped reason %q after SIGKILL", r)
	}
	if lat := e.got.Sub(killed); lat > time.Second {
		t.Fatalf("stopped recorded %s after SIGKILL, want within 1s", lat)
	}
	if d := infoOf(t, a, "life"); d.State != "shut off" || d.Live != nil {
		t.Fatalf("after SIGKILL: %+v", d)
	}
}

func lastSeqCLI(t testing.TB, a *agentProc) uint64 {
	t.Helper()
	var lr api.ListReply
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &lr); err != nil {
		t.Fatal(err)
	}
	return lr.LastSeq
}

// Issue 3, acceptance e: the agent restarts while the guest runs; it
// reattaches, records nothing twice, and recovers a clock change the guest
// made while the agent was down.
func TestGuestAgentRestart(t *testing.T) {
	state, run := t.TempDir(), shortRunDir(t)
	a := guestAgentIn(t, state, run, "tcg")
	id := defineTiny(t, a, "keep", "{offset: variable, adjustment: 0, basis: utc}")
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, id)
	a.mustCLI("start", "keep")
	con.waitLine(t, "RTC ", 60*time.Second)
	pid := infoOf(t, a, "keep").Live.PID
	before := lastSeqCLI(t, a)
	a.stop()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("QEMU died with the agent: %v", err)
	}

	// With the agent away, talk to the serial socket directly.
	conn, err := net.Dial("unix", filepath.Join(run, id, "serial.sock"))
	if err != nil {
		t.Fatal(err)
	}
	y2030 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	if _, err := conn.Write([]byte(guestTimeCmd(y2030) + "\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, conn, "RTC 2030-01-01", 10*time.Second)
	conn.Close()

	a = guestAgentIn(t, state, run, "tcg")
	d := infoOf(t, a, "keep")
	if d.State != "running" || d.Live == nil || d.Live.PID != pid {
		t.Fatalf("after restart: %+v", d)
	}
	var types []string
	var adj int64
	for _, e := range historyAfter(t, a, "keep", before) {
		types = append(types, e.Type)
		if e.Type == "rtc-changed" {
			var p rtcPayload
			payload(t, e, &p)
			adj = p.Adjustment
		}
	}
	if len(types) != 1 || types[0] != "rtc-changed" {
		t.Fatalf("events recorded across the restart: %v, want exactly [rtc-changed]", types)
	}
	near(t, "recovered adjustment", float64(adj), y2030.Sub(t0).Seconds(), 2)
	if c := configOf(t, a, "keep"); c.Clock.Adjustment != adj {
		t.Fatalf("config adjustment %d, want %d", c.Clock.Adjustment, adj)
	}
	// The reattached guest is watched: its death is noticed.
	a.mustCLI("destroy", "keep")
	if d := infoOf(t, a, "keep"); d.State != "shut off" {
		t.Fatalf("after destroy: %s", d.State)
	}
}

func readUntil(t testing.TB, conn net.Conn, want string, within time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	var buf strings.Builder
	b := make([]byte, 512)
	for {
		n, err := conn.Read(b)
		buf.Write(b[:n])
		if strings.Contains(buf.String(), want) {
			return
		}
		if err != nil {
			t.Fatalf("serial: no %q (%v); read %q", want, err, buf.String())
		}
	}
}
