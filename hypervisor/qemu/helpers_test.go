package qemu

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// Bounds for the real-QEMU tests. SeaBIOS boots in ~0.1 s under TCG but
// takes 4-20 s under nested KVM (every port access is an exit to the outer
// hypervisor), so a boot under KVM gets much longer.
const (
	bootTCG     = 20 * time.Second
	bootKVM     = 45 * time.Second
	eventWait   = 10 * time.Second
	exitNotice  = time.Second // "SIGKILL must be noticed well under 1 s"
	startBudget = 20 * time.Second
)

// requireQEMU skips without QEMU, except under CI=true where that is a
// broken runner, not a reason to pass.
func requireQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v", DefaultBinary, err)
		}
		t.Skipf("%s not installed: %v", DefaultBinary, err)
	}
}

func requireKVM(t testing.TB) {
	t.Helper()
	if err := kvmUsable(kvmDevice); err != nil {
		t.Skipf("KVM unusable: %v", err)
	}
}

// shortTempDir is a temp dir short enough for unix socket paths (t.TempDir
// embeds the test name and easily passes 108 bytes).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testLogger(t testing.TB) zerolog.Logger {
	if _, ok := t.(*testing.B); ok {
		return zerolog.Nop() // keep benchmark output to the figures
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

func newTestDriver(t testing.TB, accel string) *Driver {
	t.Helper()
	requireQEMU(t)
	if accel == AccelKVM {
		requireKVM(t)
	}
	d, err := New(Options{RunDir: shortTempDir(t), Accel: accel, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tinySpec is a 16 MiB guest booting the tiny guest from an IDE disk.
func tinySpec(t testing.TB) domains.StartSpec {
	t.Helper()
	img := filepath.Join(t.TempDir(), "tiny.img")
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	return domains.StartSpec{Config: domains.Config{
		Name: "t" + id.String()[:8], UUID: id, MemoryMiB: 16, VCPUs: 1,
		Clock:  domains.Clock{Offset: domains.OffsetUTC},
		Serial: &domains.Serial{Log: true}, // dumped when a test fails
		Disks:  []domains.Disk{{Target: "hda", Path: img, Format: "raw", Bus: "ide", Boot: true}},
	}}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startTest starts spec and makes sure the guest is gone after the test.
func startTest(t testing.TB, d *Driver, spec domains.StartSpec) *Guest {
	t.Helper()
	g, err := d.StartGuest(ctxFor(t, startBudget), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		killAndDetach(t, g)
		if t.Failed() {
			t.Logf("exit: %+v", g.Exit())
			b, _ := os.ReadFile(g.Paths().Log)
			t.Logf("qemu.log:\n%s", b)
			b, _ = os.ReadFile(g.Paths().SerialLog)
			t.Logf("serial.log:\n%q", b)
		}
	})
	return g
}

func killAndDetach(t testing.TB, g *Guest) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		t.Errorf("cleanup: kill: %v", err)
	}
	g.Detach()
}

// console reads the guest's serial lines in the background.
type console struct {
	conn  net.Conn
	lines chan string
}

func openTestConsole(t testing.TB, path string) *console {
	t.Helper()
	conn, err := OpenConsole(ctxFor(t, 10*time.Second), path)
	if err != nil {
		t.Fatal(err)
	}
	c := &console{conn: conn, lines: make(chan string, 1024)}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(c.lines)
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case c.lines <- strings.TrimRight(line, "\r\n"):
			default: // a test that stopped reading does not block the guest
			}
		}
	}()
	return c
}

// waitLine returns the next line starting with prefix.
func (c *console) waitLine(t testing.TB, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("console closed while waiting for %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-deadline:
			t.Fatalf("no console line starting with %q within %v", prefix, within)
		}
	}
}

// waitRTC returns the guest's clock from its next RTC line.
func (c *console) waitRTC(t testing.TB, within time.Duration) time.Time {
	t.Helper()
	line := c.waitLine(t, "RTC ", within)
	rtc, err := guest.ParseRTC(line)
	if err != nil {
		t.Fatal(err)
	}
	return rtc
}

func (c *console) send(t testing.TB, s string) {
	t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		t.Fatalf("console write: %v", err)
	}
}

// waitEvent returns the next event of kind, skipping others.
func waitEvent(t testing.TB, g domains.Guest, kind domains.GuestEventKind, within time.Duration) domains.GuestEvent {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("events closed while waiting for kind %d", kind)
			}
			t.Logf("event %+v", ev)
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event of kind %d within %v", kind, within)
		}
	}
}

func waitDone(t testing.TB, g domains.Guest, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	select {
	case <-g.Done():
		return time.Since(t0)
	case <-time.After(within):
		t.Fatalf("QEMU (pid %d) not seen to exit within %v", g.PID(), within)
		return 0
	}
}

// near fails unless got is within tol of want.
func near(t testing.TB, what string, got, want time.Time, tol time.Duration) {
	t.Helper()
	if d := got.Sub(want); d > tol || d < -tol {
		t.Errorf("%s = %v, want %v ± %v (off by %v)", what, got, want, tol, d)
	}
}

// assertNoLeftovers checks that no QEMU of domain id runs and its sockets
// are gone.
func assertNoLeftovers(t testing.TB, p Paths, id uuid.UUID) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), id.String()) {
			t.Errorf("a process of domain %s is still there: %s", id, f)
		}
	}
	for _, f := range []string{p.QMP, p.Serial, p.PID, p.RAM} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (stat: %v)", f, err)
		}
	}
}
