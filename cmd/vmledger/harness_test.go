package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/hypervisor/linuxguest/linuxguesttest"
)

// These tests run the built binary, as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmledger-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "vmledger")
	cleanFiles := setupTestFiles() // confine_harness_test.go
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	linuxguesttest.Cleanup()
	cleanFiles()
	os.Exit(code)
}

// agentProc is a running `vmledger agent`.
type agentProc struct {
	t        testing.TB
	cmd      *exec.Cmd
	natsURL  string
	metrics  string
	runDir   string
	host     string
	stateDir string
	done     chan struct{}
	scanned  chan struct{} // closed when every log line is in stderr
	stderr   *lockedBuffer
}

// lockedBuffer is the agent's log as read so far; tests read it while the
// reader goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Bytes() []byte { return []byte(l.String()) }

// startAgent runs an agent with an embedded NATS on a free port and waits
// for its "agent ready" log line.
func startAgent(t testing.TB, stateDir string, extra ...string) *agentProc {
	t.Helper()
	return startAgentEnv(t, stateDir, nil, append([]string{"--accel", "none"}, extra...)...)
}

// startAgentEnv is startAgent with extra environment (e.g. TZ).
func startAgentEnv(t testing.TB, stateDir string, env []string, extra ...string) *agentProc {
	t.Helper()
	return startAgentBin(t, binary, stateDir, env, extra...)
}

// startAgentBin is startAgentEnv with another build of vmledger (a
// reference build for benchmarks that compare).
func startAgentBin(t testing.TB, bin, stateDir string, env []string, extra ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, host: "testhost", stateDir: stateDir, done: make(chan struct{}), scanned: make(chan struct{}), stderr: &lockedBuffer{}}
	args := append([]string{"agent", "--state-dir", stateDir, "--host", a.host, "--nats-listen", "127.0.0.1:0", "--log-level", "info"}, extra...)
	if bin == binary {
		args = append(args, allowArgs(t, stateDir, extra)...)
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	a.cmd.Stderr = pw
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	go func() {
		defer close(a.scanned)
		defer func() { _, _ = io.Copy(io.Discard, pr) }() // never block the agent on a long line
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			a.stderr.WriteString(line + "\n")
			var raw map[string]any
			// Decode only the candidates: under BenchmarkAgentLoad the agent
			// logs hundreds of lines a second, and this is the generator's CPU.
			if strings.Contains(line, "agent ready") && json.Unmarshal([]byte(line), &raw) == nil && raw["message"] == "agent ready" {
				u, _ := raw["nats"].(string)
				m, _ := raw["metrics"].(string)
				select {
				case ready <- [2]string{u, m}:
				default:
				}
			}
		}
	}()
	go func() { _ = a.cmd.Wait(); pw.Close(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		<-a.scanned
		// Issue 7, defect 15: every line the agent logged, in every test
		// that runs one, is one JSON object without a duplicate key (this
		// build's agent: a reference build is what it was).
		if bad := bustest.CheckLogLines(a.stderr.Bytes()); len(bad) > 0 && bin == binary {
			t.Errorf("agent log has %d bad lines:\n%s", len(bad), strings.Join(bad, "\n"))
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.stderr.String())
		}
	})
	select {
	case r := <-ready:
		a.natsURL, a.metrics = withToken(t, r[0], stateDir), r[1]
	case <-a.done:
		t.Fatalf("agent exited before ready:\n%s", a.stderr.String())
	case <-time.After(2 * time.Minute): // BenchmarkAgentLoad's restart reattaches 100 guests, one by one
		t.Fatalf("agent not ready after 2 min:\n%s", a.stderr.String())
	}
	return a
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agentProc) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			a.t.Errorf("agent exited with %d after SIGTERM:\n%s", code, a.stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		a.t.Errorf("agent did not stop on SIGTERM within 30s")
	}
}

func (a *agentProc) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}

// cli runs a client verb against the agent and returns stdout, stderr and
// the exit code.
func (a *agentProc) cli(args ...string) (string, string, int) {
	a.t.Helper()
	full := append([]string{"--nats-url", a.natsURL, "--host", a.host, "--timeout", "20s"}, args...)
	return runCLI(a.t, full...)
}

func runCLI(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustCLI runs a verb that must succeed.
func (a *agentProc) mustCLI(args ...string) string {
	a.t.Helper()
	out, errs, code := a.cli(args...)
	if code != 0 {
		a.t.Fatalf("vmledger %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func uuidOf(t testing.TB, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// withToken puts the agent's NATS token (from its state directory) into
// the URL, the way a user holding the token connects with plain nats.go.
func withToken(t testing.TB, url, stateDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "nats.token"))
	if err != nil {
		return url // --nats-no-auth or an external server
	}
	return strings.Replace(url, "nats://", "nats://"+strings.TrimSpace(string(b))+"@", 1)
}
