package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 14 b: the agent writes one nkey identity per role (0600) and the
// embedded server holds each to its rights: read-only reads, its changing
// commands are refused by the server at once; operator commands.
func TestCLIIdentities(t *testing.T) {
	state := t.TempDir()
	a := startAgent(t, state, "--accel", "none")
	for _, r := range []string{"agent", "operator", "readonly", "console"} {
		fi, err := os.Stat(filepath.Join(state, "nats-users", r+".nk"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s identity: %v, mode %v, want 0600", r, err, fi)
		}
	}
	bare := bareURL(a)
	tokenF := filepath.Join(state, "nats.token")
	as := func(role string, args ...string) (string, string, int) {
		return runCLI(t, append([]string{"--nats-url", bare, "--host", a.host, "--nats-token-file", tokenF,
			"--nats-identity", role, "--timeout", "20s"}, args...)...)
	}
	dir := t.TempDir()
	cfg := writeFile(t, dir, "web.json", `{"name":"web","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`)
	if out, errs, code := as("operator", "define", cfg); code != 0 {
		t.Fatalf("operator define: exit %d %s %s", code, out, errs)
	}
	for _, args := range [][]string{{"list"}, {"info", "web"}, {"config", "web"}, {"events"}} {
		if out, errs, code := as("readonly", args...); code != 0 || !strings.Contains(out, "web") {
			t.Fatalf("readonly %v: exit %d %q %s", args, code, out, errs)
		}
	}
	cfg2 := writeFile(t, dir, "db.json", `{"name":"db","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`)
	for _, args := range [][]string{{"define", cfg2}, {"start", "web"}, {"destroy", "web"}, {"undefine", "web"}} {
		_, errs, code := as("readonly", args...)
		if code == 0 || !strings.Contains(errs, "refused by the NATS server") {
			t.Fatalf("readonly %v: exit %d %s, want a refusal by the server", args, code, errs)
		}
	}
	// The refused commands changed nothing.
	// "\ndb " (a row named db), not "db": a random UUID may hold those letters.
	if out, _, _ := as("readonly", "list"); strings.Contains(out, "\ndb ") || !strings.Contains(out, "shut") {
		t.Fatalf("after refused commands: %q", out)
	}
	if _, errs, code := as("root", "list"); code == 0 || !strings.Contains(errs, "--nats-identity \"root\"") {
		t.Fatalf("unknown identity: exit %d %s", code, errs)
	}
	// The identity file can be copied and named directly.
	ro := writeFile(t, dir, "readonly.nk", mustRead(t, filepath.Join(state, "nats-users", "readonly.nk")))
	if out, errs, code := runCLI(t, "--nats-url", bare, "--host", a.host, "--nats-nkey", ro, "list"); code != 0 || !strings.Contains(out, "web") {
		t.Fatalf("--nats-nkey readonly list: exit %d %q %s", code, out, errs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
