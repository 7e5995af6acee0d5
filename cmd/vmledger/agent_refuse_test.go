package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 7, defect 12: an agent asked for something that cannot work
// refuses to start, with a clear message and exit code 2, instead of
// serving degraded; state files others may use are refused as ssh
// refuses loose keys.
func TestAgentRefusesToStart(t *testing.T) {
	requireQEMU(t) // so that a refusal is not merely "QEMU is not installed"
	long := filepath.Join(t.TempDir(), strings.Repeat("r", 90))
	short := shortRunDir(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, state string)
		args  []string
		want  string
	}{
		{"explicit qemu binary missing", nil, []string{"--accel", "auto", "--run-dir", short, "--qemu", "/nonexistent/qemu"}, "/nonexistent/qemu"},
		{"explicit qemu binary not qemu", nil, []string{"--accel", "tcg", "--run-dir", short, "--qemu", "/bin/false"}, "/bin/false -version"},
		{"run dir too long for sockets", nil, []string{"--accel", "auto", "--run-dir", long}, "too long"},
		{"no auth on all interfaces", nil, []string{"--accel", "none", "--nats-no-auth", "--nats-listen", "0.0.0.0:0"}, "loopback"},
		{"no auth on a named host", nil, []string{"--accel", "none", "--nats-no-auth", "--nats-listen", "example.org:0"}, "loopback"},
		{"token file readable by others", func(t *testing.T, state string) {
			chmod(t, writeFile(t, state, "nats.token", strings.Repeat("a", 64)+"\n"), 0o644)
		}, []string{"--accel", "none"}, "nats.token: mode 0644"},
		{"identity readable by others", func(t *testing.T, state string) {
			if err := os.Mkdir(filepath.Join(state, "nats-users"), 0o700); err != nil {
				t.Fatal(err)
			}
			chmod(t, writeFile(t, filepath.Join(state, "nats-users"), "readonly.nk", "SU\n"), 0o640)
		}, []string{"--accel", "none"}, "readonly.nk: mode 0640"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, state)
			}
			stderr, code := agentRefuses(t, state, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q in:\n%s", code, exitUsage, tc.want, stderr)
			}
		})
	}
	// The loopback forms are accepted without a token.
	for _, listen := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		a := startAgent(t, t.TempDir(), "--nats-no-auth", "--nats-listen", listen)
		a.mustCLI("list")
		a.stop()
	}
}

// Issue 7, defect 12: a state directory others may enter is fixed (mode
// 0700), with a warning in the log, rather than refused.
func TestAgentFixesStateDirMode(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, state, 0o755)
	stderr, served, _ := runAgent(t, state, "--accel", "none")
	if !served {
		t.Fatalf("the agent did not start:\n%s", stderr)
	}
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %04o after start, want 0700", fi.Mode().Perm())
	}
	if !strings.Contains(stderr, "set its mode to 0700") {
		t.Fatalf("no log line about the fix:\n%s", stderr)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// agentRefuses runs an agent that must exit before it serves, and
// returns its stderr and exit code.
func agentRefuses(t *testing.T, state string, extra ...string) (string, int) {
	t.Helper()
	stderr, served, code := runAgent(t, state, extra...)
	if served {
		t.Fatalf("the agent served instead of refusing:\n%s", stderr)
	}
	return stderr, code
}

// runAgent runs an agent until it is ready (then stops it with SIGTERM)
// or exits, and returns its log up to then, whether it served, and its
// exit code.
func runAgent(t *testing.T, state string, extra ...string) (string, bool, int) {
	t.Helper()
	args := append([]string{"agent", "--state-dir", state, "--host", "testhost", "--nats-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var buf bytes.Buffer
	served := false
	timeout := time.After(60 * time.Second)
	for open := true; open; {
		select {
		case line, ok := <-lines:
			open = ok
			buf.WriteString(line + "\n")
			if strings.Contains(line, `"agent ready"`) && !served {
				served = true
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("the agent neither served nor exited in 60s:\n%s", buf.String())
		}
	}
	_ = cmd.Wait()
	return buf.String(), served, cmd.ProcessState.ExitCode()
}
