package qmp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// TestRealQEMU drives a real qemu-system-x86_64. It is skipped when QEMU is
// not installed, except under CI=true, where a missing QEMU is a failure:
// the CI image is supposed to have it.
func TestRealQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but qemu-system-x86_64 is missing: %v", err)
		}
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	for _, machine := range []string{"pc", "q35"} {
		t.Run(machine, func(t *testing.T) { testRealQEMU(t, qemu, machine) })
	}
}

func testRealQEMU(t *testing.T, qemu, machine string) {
	sock := shortSocketPath(t)
	accel := "tcg"
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		accel = "kvm"
	}
	var stderr bytes.Buffer
	cmd := exec.Command(qemu, "-S", "-nodefaults", "-no-user-config", "-display", "none",
		"-machine", machine, "-m", "16", "-accel", accel,
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when QEMU is gone; then waitErr is set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // no-op if it already quit
		<-exited
	})
	t.Logf("started QEMU (machine %s, accel %s)", machine, accel)

	c := dialRetry(t, sock, exited, func() string { return fmt.Sprintf("%v: %s", waitErr, &stderr) })
	defer c.Close()
	ctx := ctxTimeout(t, 30*time.Second)

	if v := c.Version(); v.Major < 7 {
		t.Errorf("Version = %v, want >= 7", v)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != "prelaunch" || st.Running {
		t.Fatalf("QueryStatus = %+v, %v; want prelaunch, not running", st, err)
	}

	// -rtc defaults to base=utc, so the RTC must read as UTC now.
	before := time.Now().UTC().Truncate(time.Second)
	rtc, err := c.RTCTime(ctx)
	if err != nil {
		t.Fatalf("RTCTime: %v", err)
	}
	if after := time.Now().UTC(); rtc.Before(before.Add(-2*time.Second)) || rtc.After(after.Add(2*time.Second)) {
		t.Errorf("RTCTime = %v, want about %v", rtc, after)
	}
	var rtcPath string // the device path differs per machine; the link finds it
	if err := c.QOMGet(ctx, "/machine", "rtc_state", &rtcPath); err != nil || rtcPath == "" {
		t.Errorf("rtc_state = %q, %v", rtcPath, err)
	}

	var qerr *qmp.Error
	if err := c.Execute(ctx, "no-such-command", nil, nil); !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	if m, err := c.QueryMigrate(ctx); err != nil || m.Status != "none" {
		t.Errorf("QueryMigrate = %+v, %v", m, err)
	}

	if err := c.Cont(ctx); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if ev := nextEvent(t, c); ev.Name != qmp.EventResume || ev.Timestamp.IsZero() {
		t.Errorf("after cont got %+v, want RESUME with a timestamp", ev)
	}
	if st, err := c.QueryStatus(ctx); err != nil || !st.Running {
		t.Errorf("QueryStatus after cont = %+v, %v", st, err)
	}

	if err := c.Quit(ctx); err != nil {
		t.Fatalf("quit: %v", err)
	}
	d, err := nextEvent(t, c).Decode()
	if err != nil || d != (qmp.ShutdownEvent{Guest: false, Reason: "host-qmp-quit"}) {
		t.Errorf("after quit got %+v, %v; want SHUTDOWN host-qmp-quit", d, err)
	}
	waitDone(t, c)
	waitEventsClosed(t, c)
	if !errors.Is(c.Err(), qmp.ErrDisconnected) {
		t.Errorf("Err() = %v, want ErrDisconnected", c.Err())
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("QEMU did not exit after quit")
	}
}

// dialRetry waits for QEMU to create its socket.
func dialRetry(t *testing.T, sock string, exited <-chan struct{}, why func() string) *qmp.Client {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := qmp.Dial(ctx, "unix", sock)
		cancel()
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("QEMU exited: %s", why())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot connect to QEMU: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shortSocketPath(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	if len(path) < 100 {
		return path
	}
	dir, err := os.MkdirTemp("/tmp", "qmpi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "qmp.sock")
}
