package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// The embedded NATS server admits only holders of the token in the state
// directory (0600): other local users cannot command the agent.
func TestEmbeddedNATSRequiresToken(t *testing.T) {
	state := t.TempDir()
	a := startAgent(t, state)
	fi, err := os.Stat(filepath.Join(state, "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	bare := a.natsURL[:strings.Index(a.natsURL, "//")+2] + a.natsURL[strings.Index(a.natsURL, "@")+1:]
	if _, err := nats.Connect(bare); !errors.Is(err, nats.ErrAuthorization) && (err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization")) {
		t.Fatalf("connect without token: %v, want an authorization error", err)
	}
	// The CLI without a token (and no readable token file) is refused too.
	_, errs, code := runCLI(t, "--nats-url", bare, "--host", a.host, "--nats-token-file", filepath.Join(t.TempDir(), "none"), "--timeout", "3s", "list")
	if code != 5 {
		t.Fatalf("list without token: exit %d (%s), want 5", code, errs)
	}
	// With the token file, as the owner of the state directory, it works.
	out, errs, code := runCLI(t, "--nats-url", bare, "--host", a.host, "--nats-token-file", filepath.Join(state, "nats.token"), "list")
	if code != 0 || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("list with the token file: exit %d, %q %s", code, out, errs)
	}
	// And the token survives a restart: the same file, the same token.
	before, _ := os.ReadFile(filepath.Join(state, "nats.token"))
	a.stop()
	startAgent(t, state)
	after, _ := os.ReadFile(filepath.Join(state, "nats.token"))
	if string(before) != string(after) {
		t.Fatal("token changed across a restart")
	}
}
