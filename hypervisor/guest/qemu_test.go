package guest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests boot the embedded guest under a real QEMU. They skip when
// qemu-system-x86_64 is missing, except on CI (CI=true) where a missing
// QEMU is a broken runner and must not pass silently.

const qemuBinary = "qemu-system-x86_64"

// Generous bounds: SeaBIOS needs 10-20 s to boot under nested KVM (every
// port access is an expensive exit), and TCG on a loaded runner is slow.
// Every wait below is bounded by one of these.
const (
	bootTimeout  = 120 * time.Second // QEMU start to banner
	lineTimeout  = 10 * time.Second  // one more serial line or QMP event
	exitTimeout  = 30 * time.Second  // guest power-off to QEMU exit
	writeTimeout = 5 * time.Second
)

func qemuPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath(qemuBinary)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is not available: %v", qemuBinary, err)
		}
		t.Skipf("%s not available: %v", qemuBinary, err)
	}
	return p
}

// kvmUsable reports whether this process may create KVM guests; the
// device node existing is not enough (permissions, containers).
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func TestQEMU(t *testing.T) {
	qemuPath(t)
	for _, accel := range []string{"kvm", "tcg"} {
		for _, machine := range []string{"pc", "q35"} {
			t.Run(accel+"/"+machine, func(t *testing.T) {
				if accel == "kvm" && !kvmUsable() {
					t.Skip("/dev/kvm cannot be opened read-write")
				}
				// TCG boots in well under a second; one machine of
				// it is the quick smoke test.
				if testing.Short() && (accel != "tcg" || machine != "pc") {
					t.Skip("-short: only tcg/pc")
				}
				t.Parallel()
				t.Run("lifecycle", func(t *testing.T) {
					t.Parallel()
					testLifecycle(t, accel, machine)
				})
				t.Run("panic", func(t *testing.T) {
					t.Parallel()
					testPanic(t, accel, machine)
				})
			})
		}
	}
}

// testLifecycle walks one guest through clock output, an unknown command,
// setting the RTC, a guest-initiated reset, and an ACPI power-off.
func testLifecycle(t *testing.T, accel, machine string) {
	v := startVM(t, vmConfig{accel: accel, machine: machine})
	v.expectLine(bootTimeout, "banner", equals(Banner))

	// Without -rtc, QEMU's RTC follows the host clock in UTC.
	first := v.expectRTC(lineTimeout)
	if d := first.time.Sub(time.Now().UTC()).Abs(); d > 5*time.Minute {
		t.Errorf("guest RTC %v is %v away from host UTC", first.time, d)
	}

	// Two consecutive lines one second apart, by their content and by
	// when they arrived. (Skip pairs disturbed by a scheduling hiccup.)
	prev, ok := first, false
	for range 5 {
		cur := v.expectRTC(lineTimeout)
		gap := cur.at.Sub(prev.at)
		if cur.time.Sub(prev.time) == time.Second && gap > 400*time.Millisecond && gap < 2*time.Second {
			ok = true
			break
		}
		t.Logf("clock lines %v -> %v arrived %v apart", prev.time, cur.time, gap)
		prev = cur
	}
	if !ok {
		t.Fatal("no two consecutive RTC lines one second apart")
	}

	v.send("FOO\r\n")
	v.expectLine(lineTimeout, "ERR for an unknown command", equals("ERR"))

	// CRLF on purpose: the empty line after \r must not produce an ERR.
	v.send("T 20300101000000\r\n")
	v.expectLine(lineTimeout, "OK T", equals("OK T"))
	if l := v.expectRTC(lineTimeout); !strings.HasPrefix(l.text, "RTC 2030-01-01 00:00:0") {
		t.Fatalf("first clock line after setting the RTC is %q, want RTC 2030-01-01 00:00:0x", l.text)
	}
	v.expectEvent(lineTimeout, "RTC_CHANGE", nil)

	v.send(CmdReset)
	v.expectLine(lineTimeout, "OK R", equals("OK R"))
	v.expectEvent(lineTimeout, "RESET", func(data map[string]any) bool { return data["guest"] == true })
	v.expectLine(bootTimeout, "banner after reset", equals(Banner))
	// The RTC keeps running across a reset, so the time set above stays.
	if l := v.expectRTC(lineTimeout); !strings.HasPrefix(l.text, "RTC 2030-01-01 00:0") {
		t.Errorf("clock line after reset is %q, want the RTC set before the reset", l.text)
	}

	v.send(CmdPowerOff)
	v.expectLine(lineTimeout, "OK P", equals("OK P"))
	v.expectEvent(lineTimeout, "SHUTDOWN", func(data map[string]any) bool {
		return data["guest"] == true && data["reason"] == "guest-shutdown"
	})
	if code := v.waitExit(exitTimeout); code != 0 {
		t.Fatalf("QEMU exited with status %d after guest power-off, want 0", code)
	}
}

// testPanic checks pvpanic, and -rtc base, on a second, short-lived guest.
func testPanic(t *testing.T, accel, machine string) {
	v := startVM(t, vmConfig{accel: accel, machine: machine, extra: []string{
		"-device", "pvpanic",
		"-rtc", "base=2025-06-01T12:00:00",
	}})
	v.expectLine(bootTimeout, "banner", equals(Banner))
	if l := v.expectRTC(lineTimeout); !strings.HasPrefix(l.text, "RTC 2025-06-01 ") {
		t.Errorf("first clock line with -rtc base=2025-06-01T12:00:00 is %q", l.text)
	}
	v.send(CmdPanic)
	v.expectLine(lineTimeout, "OK X", equals("OK X"))
	v.expectEvent(lineTimeout, "GUEST_PANICKED", nil)
}

// TestQEMUPowerButton presses the ACPI power button (QMP system_powerdown,
// which is what vmledger shutdown and virsh shutdown send) and expects the
// guest to power itself off. After a reset the guest must enable the button
// again, because QEMU's reset clears PM1a_EN. TCG is enough: the guest
// code is the same under KVM, and SeaBIOS boots far faster under TCG on
// nested-virtualisation hosts.
func TestQEMUPowerButton(t *testing.T) {
	qemuPath(t)
	for _, machine := range []string{"pc", "q35"} {
		for _, reset := range []bool{false, true} {
			name := machine + "/boot"
			if reset {
				name = machine + "/after-reset"
			}
			t.Run(name, func(t *testing.T) {
				if testing.Short() && machine != "pc" {
					t.Skip("-short: only pc")
				}
				t.Parallel()
				v := startVM(t, vmConfig{accel: "tcg", machine: machine})
				v.expectLine(bootTimeout, "banner", equals(Banner))
				v.expectRTC(lineTimeout)
				if reset {
					v.send(CmdReset)
					v.expectLine(lineTimeout, "OK R", equals("OK R"))
					v.expectLine(bootTimeout, "banner after reset", equals(Banner))
					v.expectRTC(lineTimeout)
				}

				v.qmpExecute("system_powerdown")
				v.expectEvent(lineTimeout, "POWERDOWN", nil)
				v.expectLine(lineTimeout, "OK P", equals("OK P"))
				v.expectEvent(lineTimeout, "SHUTDOWN", func(data map[string]any) bool {
					return data["guest"] == true && data["reason"] == "guest-shutdown"
				})
				if code := v.waitExit(exitTimeout); code != 0 {
					t.Fatalf("QEMU exited with status %d after the power button, want 0", code)
				}
			})
		}
	}
}

// TestQEMUServerSocket checks the other common wiring, where QEMU listens
// on the serial socket (server=on,wait=off) and the client connects later.
// The banner may be gone by then; clock lines and commands must work.
func TestQEMUServerSocket(t *testing.T) {
	qemuPath(t)
	t.Parallel()
	v := startVM(t, vmConfig{accel: "tcg", machine: "pc", serialServer: true})
	v.expectRTC(bootTimeout)
	v.send(CmdPowerOff)
	v.expectLine(lineTimeout, "OK P", equals("OK P"))
	if code := v.waitExit(exitTimeout); code != 0 {
		t.Fatalf("QEMU exited with status %d after guest power-off, want 0", code)
	}
}

type vmConfig struct {
	accel, machine string
	extra          []string
	// serialServer makes QEMU listen on the serial socket instead of
	// connecting to the test's listener.
	serialServer bool
}

type serialLine struct {
	text string
	at   time.Time
}

type rtcLine struct {
	serialLine
	time time.Time
}

type qmpEvent struct {
	Event string         `json:"event"`
	Data  map[string]any `json:"data"`
}

// qmpMessage is anything QMP sends after the handshake: an event, or the
// reply to a command (exactly one of return and error).
type qmpMessage struct {
	qmpEvent
	Return json.RawMessage `json:"return"`
	Error  json.RawMessage `json:"error"`
}

// vm is one running QEMU with the guest, its serial console split into
// lines, its QMP events and its QMP replies, each delivered on a channel.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	serial  net.Conn
	qmp     net.Conn
	lines   chan serialLine
	events  chan qmpEvent
	replies chan qmpMessage
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result; read only after exited

	mu  sync.Mutex
	log []string // serial lines and QMP events, for failure reports
}

func startVM(t *testing.T, cfg vmConfig) *vm {
	t.Helper()
	qemu := qemuPath(t)
	img := filepath.Join(t.TempDir(), "guest.img")
	if err := WriteImage(img); err != nil {
		t.Fatal(err)
	}
	// A Unix socket path must fit in ~108 bytes and t.TempDir embeds the
	// test name, so the sockets get a short directory of their own.
	sockDir, err := os.MkdirTemp("", "vmlg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	serialPath := filepath.Join(sockDir, "serial")
	qmpPath := filepath.Join(sockDir, "qmp")

	// QEMU connects to sockets we already listen on, so nothing it says
	// before we are ready (the banner, the QMP greeting) can be lost.
	qmpL := listenUnix(t, qmpPath)
	var serialL *net.UnixListener
	serialOpt := "socket,id=ser0,path=" + serialPath
	if cfg.serialServer {
		serialOpt += ",server=on,wait=off"
	} else {
		serialL = listenUnix(t, serialPath)
	}

	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", cfg.machine, "-accel", cfg.accel, "-m", "16",
		"-drive", "file=" + img + ",format=raw,if=ide",
		"-chardev", serialOpt, "-serial", "chardev:ser0",
		"-chardev", "socket,id=qmp0,path=" + qmpPath, "-mon", "chardev=qmp0,mode=control",
	}
	args = append(args, cfg.extra...)
	// t.Context is cancelled when the test ends, which kills a QEMU that
	// is still running; WaitDelay bounds the wait for its output pipes.
	cmd := exec.CommandContext(t.Context(), qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("%s %s", qemu, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vm{
		t:       t,
		cmd:     cmd,
		lines:   make(chan serialLine, 1024),
		events:  make(chan qmpEvent, 256),
		replies: make(chan qmpMessage, 16),
		exited:  make(chan struct{}),
	}
	go func() {
		v.waitErr = cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-v.exited:
		case <-time.After(exitTimeout):
			t.Errorf("QEMU (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			v.mu.Lock()
			t.Logf("guest transcript:\n%s", strings.Join(v.log, "\n"))
			v.mu.Unlock()
			t.Logf("QEMU output:\n%s", out.String())
		}
	})
	// If QEMU dies before connecting, stop waiting for it at once.
	go func() {
		<-v.exited
		qmpL.Close()
		if serialL != nil {
			serialL.Close()
		}
	}()

	qmp := v.accept(qmpL, "QMP")
	if cfg.serialServer {
		v.serial = v.dial(serialPath)
	} else {
		v.serial = v.accept(serialL, "serial")
	}
	t.Cleanup(func() { v.serial.Close(); qmp.Close() })
	v.startQMP(qmp)
	go v.readSerial()
	return v
}

func listenUnix(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func (v *vm) accept(l *net.UnixListener, what string) net.Conn {
	v.t.Helper()
	l.SetDeadline(time.Now().Add(bootTimeout))
	c, err := l.Accept()
	if err != nil {
		v.t.Fatalf("QEMU did not connect its %s socket: %v", what, err)
	}
	return c
}

// dial connects to a socket QEMU listens on, retrying until it exists.
func (v *vm) dial(path string) net.Conn {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.t.Context(), bootTimeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c
		}
		select {
		case <-ctx.Done():
			v.t.Fatalf("cannot connect to QEMU's serial socket: %v", err)
		case <-v.exited:
			v.t.Fatalf("QEMU exited before its serial socket accepted: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startQMP does the QMP handshake (greeting, qmp_capabilities) and then
// forwards every asynchronous event to v.events and every command reply to
// v.replies.
func (v *vm) startQMP(c net.Conn) {
	v.t.Helper()
	v.qmp = c
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(lineTimeout))
	greeting, err := r.ReadBytes('\n')
	if err != nil || !bytes.Contains(greeting, []byte(`"QMP"`)) {
		v.t.Fatalf("QMP greeting: %q, %v", greeting, err)
	}
	if _, err := c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		v.t.Fatalf("QMP: %v", err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			v.t.Fatalf("QMP: no reply to qmp_capabilities: %v", err)
		}
		if bytes.Contains(line, []byte(`"return"`)) {
			break
		}
		if bytes.Contains(line, []byte(`"error"`)) {
			v.t.Fatalf("QMP: qmp_capabilities failed: %s", line)
		}
	}
	c.SetDeadline(time.Time{})
	go func() {
		defer close(v.events)
		defer close(v.replies)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var msg qmpMessage
			if json.Unmarshal(line, &msg) != nil {
				continue
			}
			switch {
			case msg.Event != "":
				v.record("QMP %s %v", msg.Event, msg.Data)
				v.events <- msg.qmpEvent
			case msg.Return != nil || msg.Error != nil:
				v.record("QMP reply %s", bytes.TrimSpace(line))
				v.replies <- msg
			}
		}
	}()
}

// qmpExecute runs a QMP command without arguments and fails the test
// unless QEMU answers it with success.
func (v *vm) qmpExecute(command string) {
	v.t.Helper()
	v.record("QMP execute %s", command)
	v.qmp.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := fmt.Fprintf(v.qmp, `{"execute":%q}`+"\n", command); err != nil {
		v.t.Fatalf("QMP %s: %v", command, err)
	}
	select {
	case msg, ok := <-v.replies:
		if !ok {
			v.t.Fatalf("QMP closed while waiting for the reply to %s", command)
		}
		if msg.Error != nil {
			v.t.Fatalf("QMP %s failed: %s", command, msg.Error)
		}
	case <-time.After(lineTimeout):
		v.t.Fatalf("no QMP reply to %s within %v", command, lineTimeout)
	}
}

func (v *vm) readSerial() {
	defer close(v.lines)
	sc := bufio.NewScanner(v.serial)
	for sc.Scan() {
		l := serialLine{text: strings.TrimRight(sc.Text(), "\r"), at: time.Now()}
		v.record("serial %q", l.text)
		v.lines <- l
	}
}

func (v *vm) record(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.log = append(v.log, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (v *vm) send(cmd string) {
	v.t.Helper()
	v.record("send %q", cmd)
	v.serial.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := v.serial.Write([]byte(cmd)); err != nil {
		v.t.Fatalf("sending %q: %v", cmd, err)
	}
}

func equals(s string) func(string) bool {
	return func(l string) bool { return l == s }
}

// expectLine skips serial lines until one matches. An ERR on the way
// means the guest rejected something it should not have, so it fails.
func (v *vm) expectLine(timeout time.Duration, what string, match func(string) bool) serialLine {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.t.Context(), timeout)
	defer cancel()
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				v.t.Fatalf("serial console closed while waiting for %s", what)
			}
			if match(l.text) {
				return l
			}
			if l.text == "ERR" {
				v.t.Fatalf("guest answered ERR while waiting for %s", what)
			}
		case <-ctx.Done():
			v.t.Fatalf("no %s on the serial console within %v", what, timeout)
		}
	}
}

func (v *vm) expectRTC(timeout time.Duration) rtcLine {
	v.t.Helper()
	l := v.expectLine(timeout, "RTC line", func(s string) bool { return strings.HasPrefix(s, "RTC ") })
	tm, err := ParseRTC(l.text)
	if err != nil {
		v.t.Fatal(err)
	}
	return rtcLine{serialLine: l, time: tm}
}

// expectEvent skips QMP events until one named name whose data satisfies
// match (nil: any data) arrives.
func (v *vm) expectEvent(timeout time.Duration, name string, match func(map[string]any) bool) qmpEvent {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.t.Context(), timeout)
	defer cancel()
	for {
		select {
		case ev, ok := <-v.events:
			if !ok {
				v.t.Fatalf("QMP closed while waiting for %s", name)
			}
			if ev.Event == name && (match == nil || match(ev.Data)) {
				return ev
			}
		case <-ctx.Done():
			v.t.Fatalf("no QMP event %s within %v", name, timeout)
		}
	}
}

// waitExit waits for QEMU to exit by itself and returns its exit status.
func (v *vm) waitExit(timeout time.Duration) int {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.t.Context(), timeout)
	defer cancel()
	select {
	case <-v.exited:
	case <-ctx.Done():
		v.t.Fatalf("QEMU still running %v after the guest powered off", timeout)
	}
	var ee *exec.ExitError
	if v.waitErr != nil && !errors.As(v.waitErr, &ee) {
		v.t.Fatalf("QEMU: %v", v.waitErr)
	}
	return v.cmd.ProcessState.ExitCode()
}

// lockedBuffer collects QEMU's output; exec writes to it from its own
// goroutine while a failing test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
