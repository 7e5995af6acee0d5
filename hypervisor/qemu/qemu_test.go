package qemu

import (
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// The tests below run the tiny guest under a real QEMU. Most use TCG,
// which boots it in a fraction of a second; TestBoot also covers KVM.

func TestBoot(t *testing.T) {
	for _, tt := range []struct {
		accel string
		boot  time.Duration
	}{{AccelKVM, bootKVM}, {AccelTCG, bootTCG}} {
		t.Run(tt.accel, func(t *testing.T) {
			t.Parallel()
			d := newTestDriver(t, tt.accel)
			if d.Accel() != tt.accel {
				t.Fatalf("driver accel = %q, want %q", d.Accel(), tt.accel)
			}
			g := startTest(t, d, tinySpec(t))
			if g.Accel() != tt.accel {
				t.Errorf("guest accel = %q, want %q", g.Accel(), tt.accel)
			}
			con := openTestConsole(t, g.Console())
			rtc := con.waitRTC(t, tt.boot)
			near(t, "first RTC line", rtc, time.Now().UTC(), 3*time.Second)
			rtc = con.waitRTC(t, 5*time.Second) // and it keeps ticking
			near(t, "next RTC line", rtc, time.Now().UTC(), 3*time.Second)

			st, err := g.Status(ctxFor(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if !st.Running || st.Status != "running" {
				t.Errorf("Status = %+v, want running", st)
			}
			near(t, "Status.RTC", st.RTC, time.Now().UTC(), 3*time.Second)
		})
	}
}

// TestRTCChange: the guest sets its RTC; QEMU reports the offset from the
// base it was started with (here utc, base 0).
func TestRTCChange(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	g := startTest(t, d, tinySpec(t))
	con := openTestConsole(t, g.Console())
	con.waitRTC(t, bootTCG)

	target := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	con.send(t, guest.SetTimeCommand(target))
	sent := time.Now()
	ev := waitEvent(t, g, domains.GuestRTCChange, eventWait)
	want := target.Sub(sent).Seconds()
	if diff := float64(ev.Offset) - want; diff > 2 || diff < -2 {
		t.Errorf("RTC_CHANGE offset = %d, want %.0f ± 2", ev.Offset, want)
	}
	con.waitLine(t, "OK T", eventWait)
	rtc := con.waitRTC(t, 5*time.Second)
	near(t, "RTC after T", rtc, target, 3*time.Second)
	st, err := g.Status(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	near(t, "Status.RTC after T", st.RTC, target.Add(time.Since(sent)), 3*time.Second)
}

// TestVariableClock: a variable clock starts at UTC now + the base.
func TestVariableClock(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	const adj = 3*86400 + 7*3600 + 17
	spec.Config.Clock = domains.Clock{Offset: domains.OffsetVariable, Adjustment: adj, Basis: domains.BasisUTC}
	spec.ClockBase = domains.ClockBase(spec.Config.Clock, time.Now())
	g := startTest(t, d, spec)
	con := openTestConsole(t, g.Console())
	rtc := con.waitRTC(t, bootTCG)
	near(t, "guest RTC", rtc, time.Now().UTC().Add(adj*time.Second), 2*time.Second)
}

// TestPauseResume: stop/cont produce STOP/RESUME and Status follows; the
// paused start is checked on the way.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	spec.Paused = true
	g := startTest(t, d, spec)
	ctx := ctxFor(t, 30*time.Second)
	status := func(want string, running bool) {
		t.Helper()
		st, err := g.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != want || st.Running != running {
			t.Errorf("Status = %s running=%v, want %s running=%v", st.Status, st.Running, want, running)
		}
	}
	status("prelaunch", false)
	if err := g.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, g, domains.GuestResume, eventWait)
	status("running", true)
	con := openTestConsole(t, g.Console())
	con.waitRTC(t, bootTCG)

	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, g, domains.GuestStop, eventWait)
	status("paused", false)
	if err := g.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, g, domains.GuestResume, eventWait)
	status("running", true)

	if err := g.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, g, domains.GuestReset, eventWait)
	if ev.Guest || ev.Reason != "host-qmp-system-reset" {
		t.Errorf("RESET = %+v, want guest=false reason host-qmp-system-reset", ev)
	}
	con.waitLine(t, guest.Banner, bootTCG) // it booted again
	con.send(t, guest.CmdReset)
	ev = waitEvent(t, g, domains.GuestReset, eventWait)
	if !ev.Guest || ev.Reason != "guest-reset" {
		t.Errorf("RESET after R = %+v, want guest=true reason guest-reset", ev)
	}
	con.waitLine(t, guest.Banner, bootTCG)
}

// TestPowerOff: the guest powers off through ACPI S5, on its own (P) or
// when the ACPI power button is pressed (Powerdown).
func TestPowerOff(t *testing.T) {
	for _, tt := range []struct {
		name string
		act  func(*testing.T, *Guest, *console)
	}{
		{"guest", func(t *testing.T, _ *Guest, con *console) { con.send(t, guest.CmdPowerOff) }},
		{"button", func(t *testing.T, g *Guest, _ *console) {
			if err := g.Powerdown(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDriver(t, AccelTCG)
			spec := tinySpec(t)
			g := startTest(t, d, spec)
			con := openTestConsole(t, g.Console())
			con.waitRTC(t, bootTCG)
			tt.act(t, g, con)
			ev := waitEvent(t, g, domains.GuestShutdown, eventWait)
			if !ev.Guest || ev.Reason != "guest-shutdown" {
				t.Errorf("SHUTDOWN = %+v, want guest=true reason guest-shutdown", ev)
			}
			waitDone(t, g, eventWait)
			if e := g.Exit(); e != (domains.GuestExit{}) {
				t.Errorf("Exit = %+v, want a clean exit", e)
			}
			assertNoLeftovers(t, g.Paths(), spec.Config.UUID)
			assertEventsClose(t, g)
		})
	}
}

// TestGuestPanic: X reports a panic through pvpanic; -action panic=shutdown
// turns it into GUEST_PANICKED, SHUTDOWN and QEMU's exit.
func TestGuestPanic(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	g := startTest(t, d, tinySpec(t))
	con := openTestConsole(t, g.Console())
	con.waitRTC(t, bootTCG)
	con.send(t, guest.CmdPanic)
	ev := waitEvent(t, g, domains.GuestPanicked, eventWait)
	if ev.Reason != "poweroff" {
		t.Errorf("GUEST_PANICKED action = %q, want poweroff", ev.Reason)
	}
	ev = waitEvent(t, g, domains.GuestShutdown, eventWait)
	if !ev.Guest || ev.Reason != "guest-panic" {
		t.Errorf("SHUTDOWN = %+v, want guest=true reason guest-panic", ev)
	}
	waitDone(t, g, eventWait)
}

// TestKill: destroy is SIGKILL, noticed at once.
func TestKill(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	g := startTest(t, d, spec)
	t0 := time.Now()
	if err := g.Kill(ctxFor(t, exitNotice)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > exitNotice {
		t.Errorf("Kill took %v", took)
	}
	e := g.Exit()
	if !e.Signaled || e.Code != int(syscall.SIGKILL) {
		t.Errorf("Exit = %+v, want signaled by SIGKILL", e)
	}
	if err := g.Kill(ctxFor(t, time.Second)); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	assertNoLeftovers(t, g.Paths(), spec.Config.UUID)
	assertEventsClose(t, g)
}

// TestExternalKill: a SIGKILL from someone else is noticed at once too.
func TestExternalKill(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	g := startTest(t, d, tinySpec(t))
	if err := syscall.Kill(g.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if took := waitDone(t, g, exitNotice); took > exitNotice/2 {
		t.Logf("exit noticed after %v", took)
	}
	if e := g.Exit(); !e.Signaled {
		t.Errorf("Exit = %+v, want signaled", e)
	}
}

func assertEventsClose(t testing.TB, g domains.Guest) {
	t.Helper()
	deadline := time.After(eventWait)
	for {
		select {
		case _, ok := <-g.Events():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Events not closed after QEMU exited")
		}
	}
}
