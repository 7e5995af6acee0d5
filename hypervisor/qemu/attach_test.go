package qemu

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// TestDetachAttach simulates an agent restart: the guest keeps running
// without a monitor, a new driver attaches to it, and the attached guest
// notices an exit as fast as a child would (pidfd).
func TestDetachAttach(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	g := startTest(t, d, spec)
	if err := g.Detach(); err != nil {
		t.Fatal(err)
	}
	assertEventsClose(t, g)
	if err := g.Detach(); err != nil { // idempotent
		t.Fatal(err)
	}

	// A new driver on the same run directory, as after a restart.
	d2, err := New(Options{RunDir: d.RunDir(), Accel: AccelAuto, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d2.AttachGuest(ctxFor(t, 10*time.Second), spec.Config)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { killAndDetach(t, a) })
	if a.PID() != g.PID() || a.Accel() != AccelTCG {
		t.Errorf("attached pid %d accel %s, want pid %d accel tcg", a.PID(), a.Accel(), g.PID())
	}
	con := openTestConsole(t, a.Console())
	con.waitRTC(t, bootTCG)
	con.waitRTC(t, 5*time.Second)
	st, err := a.Status(ctxFor(t, 5*time.Second))
	if err != nil || !st.Running {
		t.Fatalf("Status = %+v, %v; want running", st, err)
	}
	if err := a.Pause(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, a, domains.GuestStop, eventWait)

	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, a, exitNotice)
	if e := a.Exit(); e.Code != -1 || e.Err == "" {
		t.Errorf("Exit of an adopted QEMU = %+v, want code -1 (unknown) with a reason", e)
	}
	assertEventsClose(t, a)

	// Now it is gone for good.
	_, err = d2.Attach(ctxFor(t, 5*time.Second), spec.Config)
	if !errors.Is(err, domains.ErrNotFound) {
		t.Errorf("Attach to a dead guest: %v, want ErrNotFound", err)
	}
}

// TestAttachNotFound: no pid file, a pid that is not a QEMU, a dead pid.
func TestAttachNotFound(t *testing.T) {
	requireQEMU(t)
	d, err := New(Options{RunDir: shortTempDir(t), Accel: AccelTCG, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pid  string // pid file content; "" for none
	}{
		{"no pid file", ""},
		{"not a qemu", strconv.Itoa(os.Getpid())},
		{"dead pid", strconv.Itoa(deadPID(t))},
		{"garbage", "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tinySpec(t)
			p := d.Paths(spec.Config.UUID)
			if tt.pid != "" {
				if err := os.MkdirAll(p.Dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p.PID, []byte(tt.pid+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			g, err := d.Attach(ctxFor(t, 5*time.Second), spec.Config)
			if !errors.Is(err, domains.ErrNotFound) || g != nil {
				t.Fatalf("Attach = %v, %v; want nil, ErrNotFound", g, err)
			}
			t.Log(err)
		})
	}
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	return p.Pid
}
