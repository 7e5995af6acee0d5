package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (what openpty(3) does, with
// x/sys/unix): the master for the test, the slave as the CLI's terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// transcript collects what a reader gives, for waiting on substrings.
type transcript struct {
	mu   sync.Mutex
	b    strings.Builder
	more chan struct{}
}

func readTranscript(r io.Reader) *transcript {
	tr := &transcript{more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			tr.mu.Lock()
			tr.b.Write(buf[:n])
			tr.mu.Unlock()
			select {
			case tr.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return tr
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.b.String()
}

// wait returns once s appears after offset from, and the offset after it.
func (tr *transcript) wait(t *testing.T, from int, s string, within time.Duration) int {
	t.Helper()
	deadline := time.After(within)
	for {
		all := tr.String()
		if from > len(all) {
			from = len(all)
		}
		if i := strings.Index(all[from:], s); i >= 0 {
			return from + i + len(s)
		}
		select {
		case <-tr.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %q within %s in:\n%.3000s", s, within, all[from:])
		}
	}
}

// consoleProc is a `vmledger console` the test drives.
type consoleProc struct {
	cmd  *exec.Cmd
	done chan int
}

func (a *agentProc) startConsole(t *testing.T, stdin io.Reader, stdout, stderr io.Writer, args ...string) *consoleProc {
	t.Helper()
	full := append([]string{"--nats-url", a.natsURL, "--host", a.host, "console"}, args...)
	p := &consoleProc{cmd: exec.Command(binary, full...), done: make(chan int, 1)}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = stdin, stdout, stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		if pw, ok := stdout.(*io.PipeWriter); ok {
			pw.Close() // the reader sees the end
		}
		p.done <- p.cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// exit waits for the console to end by itself and returns its exit code.
func (p *consoleProc) exit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-time.After(within):
		t.Fatalf("console still running after %s", within)
	}
	return -1
}

func rawMode(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&(unix.ICANON|unix.ECHO) == 0
}

// TestCLIConsoleTerminal (issue 15, point 4), on the tiny guest: on a
// terminal (a pty) console is a raw session: keys go to the guest as
// typed, Ctrl-] ends it and the terminal is restored; a session ends by
// itself when the guest stops; off a terminal, stdin at EOF leaves the
// session watching until the guest stops or --for; --until and --for work
// without --send.
func TestCLIConsoleTerminal(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	id := defineTiny(t, a, "con", "{offset: utc}")
	con := tapConsole(t, natsConn(t, a), a.host, id)
	boot := func() {
		t.Helper()
		con.drain()
		a.mustCLI("start", "con")
		con.waitLine(t, "RTC ", 60*time.Second)
	}
	boot()

	// A raw terminal session, ended by Ctrl-].
	master, slave := openPTY(t)
	if rawMode(t, slave) {
		t.Fatal("a fresh pty is already raw")
	}
	p := a.startConsole(t, slave, slave, slave, "con")
	tr := readTranscript(master)
	at := tr.wait(t, 0, "Ctrl-] ends", 20*time.Second)
	at = tr.wait(t, at, "RTC ", 20*time.Second)
	if !rawMode(t, slave) {
		t.Fatal("console did not put the terminal in raw mode")
	}
	// Typed without a newline of the terminal's own: raw mode passes the
	// CR through as the guest wants it, and echoes nothing itself.
	if _, err := master.Write([]byte("T 20300101000000\r")); err != nil {
		t.Fatal(err)
	}
	at = tr.wait(t, at, "OK T", 20*time.Second)
	tr.wait(t, at, "RTC 2030-01-01", 20*time.Second)
	if strings.Contains(tr.String(), "T 20300101000000") {
		t.Error("the terminal echoed what was typed: not raw")
	}
	if _, err := master.Write([]byte{escapeKey}); err != nil {
		t.Fatal(err)
	}
	if code := p.exit(t, 20*time.Second); code != 0 {
		t.Fatalf("console after Ctrl-]: exit %d\n%s", code, tr.String())
	}
	if rawMode(t, slave) {
		t.Fatal("console left the terminal in raw mode")
	}

	// The session ends by itself when the guest stops.
	master, slave = openPTY(t)
	p = a.startConsole(t, slave, slave, slave, "con")
	tr = readTranscript(master)
	tr.wait(t, tr.wait(t, 0, "Ctrl-] ends", 20*time.Second), "RTC ", 20*time.Second)
	a.mustCLI("destroy", "con")
	if code := p.exit(t, 30*time.Second); code != 0 {
		t.Fatalf("console after destroy: exit %d\n%s", code, tr.String())
	}
	tr.wait(t, 0, "stopped (destroyed)", 5*time.Second)
	if rawMode(t, slave) {
		t.Fatal("console left the terminal in raw mode after the guest stopped")
	}

	// Off a terminal, stdin at its end: still watching, until the stop.
	boot()
	pr, pw := io.Pipe()
	p = a.startConsole(t, strings.NewReader(""), pw, io.Discard, "con")
	lines := bufio.NewScanner(pr)
	seen := 0
	for seen < 3 && lines.Scan() { // three clock lines: it went on past EOF
		if strings.HasPrefix(lines.Text(), "RTC ") {
			seen++
		}
	}
	if seen < 3 {
		t.Fatalf("console with stdin at EOF ended after %d clock lines", seen)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	a.mustCLI("destroy", "con")
	if code := p.exit(t, 30*time.Second); code != 0 {
		t.Fatalf("console with stdin at EOF, after destroy: exit %d", code)
	}

	// --until and --for without --send.
	boot()
	if out := a.mustCLI("console", "con", "--until", "^RTC "); !strings.Contains(out, "RTC ") {
		t.Fatalf("console --until: %q", out)
	}
	out := a.mustCLI("console", "con", "--for", "2s")
	if strings.Count(out, "RTC ") < 1 {
		t.Fatalf("console --for 2s printed no clock line: %q", out)
	}
	_, errs, code := a.cli("console", "con", "--until", "^NEVER", "--for", "2s")
	if code != exitUnavailable || !strings.Contains(errs, "no console line matched") {
		t.Fatalf("console --until that never matches: exit %d, %s", code, errs)
	}
	// --send with --until, as scripts use it.
	if out := a.mustCLI("console", "con", "--send", "T 20310101000000", "--until", "^OK T", "--for", "20s"); !strings.Contains(out, "OK T") {
		t.Fatalf("console --send --until: %q", out)
	}
	a.mustCLI("destroy", "con")
}
