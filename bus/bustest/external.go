package bustest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// External is a nats-server running as a separate process (Debian's
// package), for tests that must kill and restart the server under a live
// client: an in-process server cannot be killed like a real one.
type External struct {
	tb   testing.TB
	bin  string
	conf string
	Port int
	cmd  *exec.Cmd
	exit chan struct{}
}

// NATSServerBinary finds nats-server; without it the test is skipped, or
// fails when CI=true, since CI must not silently skip the outage test.
func NATSServerBinary(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("nats-server binary not found (apt-get install nats-server); required when CI=true")
	}
	tb.Skip("nats-server binary not found (apt-get install nats-server)")
	return ""
}

// StartExternal starts nats-server on a free loopback port and stops it at
// the end of the test.
func StartExternal(tb testing.TB) *External {
	tb.Helper()
	return startExternal(tb, false, "")
}

// StartExternalConfig is StartExternal with extra configuration (e.g. an
// authorization block) appended to the server's config file.
func StartExternalConfig(tb testing.TB, extra string) *External {
	tb.Helper()
	return startExternal(tb, false, extra)
}

// StartExternalJetStream is StartExternal with JetStream enabled (its
// store in a temporary directory), for fleet consumers of the events.
func StartExternalJetStream(tb testing.TB) *External {
	tb.Helper()
	return startExternal(tb, true, "")
}

func startExternal(tb testing.TB, jetstream bool, extra string) *External {
	tb.Helper()
	bin := NATSServerBinary(tb)
	port := freePort(tb)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	// A config file, not just flags, so restarts are identical.
	body := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nmax_payload: 1048576\n", port) + extra
	if jetstream {
		body += fmt.Sprintf("jetstream {\n  store_dir: %q\n}\n", filepath.Join(dir, "js"))
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	x := &External{tb: tb, bin: bin, conf: conf, Port: port}
	x.Start()
	tb.Cleanup(x.Stop)
	return x
}

// URL is the server's client URL.
func (x *External) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(x.Port) }

// Start (re)starts the process on the same port and waits until it
// accepts TCP connections.
func (x *External) Start() {
	x.tb.Helper()
	cmd := exec.Command(x.bin, "-c", x.conf, "-a", "127.0.0.1", "-p", strconv.Itoa(x.Port))
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		x.tb.Fatalf("start nats-server: %v", err)
	}
	x.cmd, x.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) { _ = cmd.Wait(); close(exit) }(x.exit)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(x.Port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-x.exit:
			x.tb.Fatalf("nats-server exited at start (port %d taken?)", x.Port)
		case <-time.After(20 * time.Millisecond):
		}
	}
	x.tb.Fatalf("nats-server not listening on %d after 10s", x.Port)
}

// Kill stops the server abruptly (SIGKILL): clients see the TCP connection
// die, as in a crash.
func (x *External) Kill() { x.signal(syscall.SIGKILL) }

// Stop stops the server with SIGTERM and waits for it; a no-op if stopped.
func (x *External) Stop() { x.signal(syscall.SIGTERM) }

func (x *External) signal(sig syscall.Signal) {
	if x.cmd == nil {
		return
	}
	_ = x.cmd.Process.Signal(sig)
	select {
	case <-x.exit:
	case <-time.After(10 * time.Second):
		_ = x.cmd.Process.Kill()
		<-x.exit
	}
	x.cmd = nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
