package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmledger/vmledger/hypervisor/guest"
)

// secrets are the agent's NATS token and every identity's nkey seed.
func secrets(t *testing.T, state string) map[string]string {
	t.Helper()
	s := map[string]string{"nats.token": strings.TrimSpace(mustRead(t, filepath.Join(state, "nats.token")))}
	for _, r := range []string{"agent", "operator", "readonly", "console"} {
		s[r+".nk"] = strings.TrimSpace(mustRead(t, filepath.Join(state, "nats-users", r+".nk")))
	}
	return s
}

// noSecret fails if any secret appears in what (a process list entry, a
// log, a metrics page).
func noSecret(t *testing.T, secrets map[string]string, what, text string) {
	t.Helper()
	for name, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("secret %s is %q: too short to look for", name, s)
		}
		if strings.Contains(text, s) {
			t.Errorf("%s shows the secret of %s", what, name)
		}
	}
}

func procFile(t *testing.T, pid int, name string) string {
	t.Helper()
	return strings.ReplaceAll(mustRead(t, fmt.Sprintf("/proc/%d/%s", pid, name)), "\x00", " ")
}

// Issue 14 d: no secret in the process list (the agent's and QEMU's
// /proc/PID/cmdline, QEMU's environment even when the agent's has the
// token, as a user's shell exporting VMLEDGER_NATS_TOKEN gives it), in
// the agent's log, QEMU's log or the metrics.
func TestNoSecretInProcessesLogsOrMetrics(t *testing.T) {
	requireQEMU(t)
	state, run := t.TempDir(), shortRunDir(t)
	// A first start makes the token; the second has it in its environment.
	startAgent(t, state).stop()
	sec := secrets(t, state)
	a := startAgentEnv(t, state, []string{"VMLEDGER_NATS_TOKEN=" + sec["nats.token"]}, "--accel", "tcg", "--run-dir", run, "--metrics-addr", "127.0.0.1:0")
	a.runDir = run
	id := defineTiny(t, a, "sec", "{offset: utc}")
	a.mustCLI("start", "sec")
	a.mustCLI("console", "sec", "--until", "^RTC ", "--for", "30s")
	pid := infoOf(t, a, "sec").Live.PID
	noSecret(t, sec, "the agent's command line", procFile(t, a.cmd.Process.Pid, "cmdline"))
	noSecret(t, sec, "QEMU's command line", procFile(t, pid, "cmdline"))
	env := procFile(t, pid, "environ")
	noSecret(t, sec, "QEMU's environment", env)
	if strings.Contains(env, "VMLEDGER_") {
		t.Errorf("QEMU inherited the agent's VMLEDGER_ variables: %q", env)
	}
	noSecret(t, sec, "QEMU's log", mustRead(t, filepath.Join(run, id, "qemu.log")))
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "vmledger_") {
		t.Fatalf("metrics: %q", body)
	}
	noSecret(t, sec, "the metrics", string(body))
	a.mustCLI("destroy", "sec")
	a.stop()
	noSecret(t, sec, "the agent's log", a.stderr.String())
}

// Issue 14 d: --qemu-user runs QEMU as an unprivileged user (made by the
// test), under seccomp, with the run directory its own; the guest boots
// and is destroyed as usual. Needs root (outside CI it is skipped
// without).
func TestQEMUUser(t *testing.T) {
	requireQEMU(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("--qemu-user needs root to test, and CI runs as root")
		}
		t.Skip("--qemu-user needs root")
	}
	name := fmt.Sprintf("vmlq%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The disk's directory must be reachable by that user, the disk its.
	own, err := os.MkdirTemp("", "vlq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(own) })
	img := filepath.Join(own, "tiny.img")
	if err := os.Chmod(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(img, uid, gid); err != nil {
		t.Fatal(err)
	}
	run := shortRunDir(t)
	a := startAgentEnv(t, t.TempDir(), nil, "--accel", "tcg", "--run-dir", run, "--allow-dir", own, "--qemu-user", name)
	a.runDir = run
	cfg := writeFile(t, diskDir(t), "qu.yaml", "name: qu\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\ndisks: [{target: hda, path: "+img+", format: raw, bus: ide}]\n")
	a.mustCLI("define", cfg)
	a.mustCLI("start", "qu")
	a.mustCLI("console", "qu", "--until", "^RTC ", "--for", "30s")
	d := infoOf(t, a, "qu")
	status := procFile(t, d.Live.PID, "status")
	if !strings.Contains(status, fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid)) || !strings.Contains(status, "Seccomp:\t2") {
		t.Fatalf("QEMU is not %s (%d) under seccomp:\n%s", name, uid, status)
	}
	fi, err := os.Stat(filepath.Join(run, d.Config.UUID.String()))
	if err != nil {
		t.Fatal(err)
	}
	if ownerOf(fi) != uid {
		t.Fatalf("run directory owned by %d, want %d", ownerOf(fi), uid)
	}
	a.mustCLI("destroy", "qu")
	// Without root nothing could start QEMU as another user: the flag
	// names a user that must exist.
	stderr, code := agentRefuses(t, t.TempDir(), "--accel", "tcg", "--run-dir", shortRunDir(t), "--qemu-user", "no-such-user-vmledger")
	if code != exitUsage || !strings.Contains(stderr, "no-such-user-vmledger") {
		t.Fatalf("unknown --qemu-user: exit %d\n%s", code, stderr)
	}
}

func ownerOf(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
