package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/bus/bustest"
)

// freeLoopbackPort is a port nothing listens on (a listener was just
// closed there).
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// bareURL is a's NATS URL without its token.
func bareURL(a *agentProc) string {
	return "nats://" + a.natsURL[strings.Index(a.natsURL, "@")+1:]
}

// Issue 7, defects 8 and 13, on the CLI: a refused connection, a wrong
// token and a host no agent serves each fail at once with exit 5 (each
// run has --timeout 10m: a wait for it would be killed by the runner
// after a minute, not exit 5), naming the redacted URL and, for the
// token, where it came from; no message shows the token.
func TestCLIConnectErrorsFailFastAndRedact(t *testing.T) {
	const secret = "TOKEN-s3cr3t-0123456789"
	state := t.TempDir()
	a := startAgent(t, state)
	wrongFile := filepath.Join(t.TempDir(), "wrong.token")
	if err := os.WriteFile(wrongFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		mentions []string
	}{
		{"refused connection", []string{"--nats-url", "nats://" + secret + "@127.0.0.1:" + freeLoopbackPort(t)},
			[]string{"nats://***@127.0.0.1:", "is the agent"}},
		{"wrong token in the URL", []string{"--nats-url", "nats://" + secret + "@" + bareURL(a)[len("nats://"):]},
			[]string{"nats://***@127.0.0.1:", "Authorization", "--nats-url"}},
		{"wrong token file", []string{"--nats-url", bareURL(a), "--nats-token-file", wrongFile},
			[]string{bareURL(a), "Authorization", wrongFile}},
		{"no token file", []string{"--nats-url", bareURL(a), "--nats-token-file", filepath.Join(state, "missing")},
			[]string{"Authorization", filepath.Join(state, "missing"), "does not exist"}},
		{"no agent for the host", []string{"--nats-url", a.natsURL, "--host", "nobody"},
			[]string{"no agent serves host \"nobody\"", "nats://***@127.0.0.1:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{}, c.args...), "--timeout", "10m", "list")
			if c.name != "no agent for the host" {
				args = append([]string{"--host", a.host}, args...)
			}
			out, errs, code := runCLI(t, args...)
			if code != exitUnavailable {
				t.Fatalf("exit %d, want %d: %s%s", code, exitUnavailable, out, errs)
			}
			if strings.Contains(errs, secret) || strings.Contains(errs, "s3cr3t") || strings.Contains(errs, strings.TrimPrefix(strings.Split(a.natsURL, "@")[0], "nats://")) {
				t.Fatalf("the error shows a token: %s", errs)
			}
			for _, m := range c.mentions {
				if !strings.Contains(errs, m) {
					t.Errorf("error does not mention %q: %s", m, errs)
				}
			}
		})
	}
	// Nor does the agent (its NATS server saw the wrong token) log it.
	a.stop()
	<-a.scanned
	if log := a.stderr.String(); strings.Contains(log, secret) || strings.Contains(log, "s3cr3t") {
		t.Fatalf("agent log shows the wrong token:\n%s", log)
	}
}

// Issue 7, defect 8, on the agent: started with an external server's URL
// holding a token, it logs that URL (at start, when connected, on each
// failed attempt) with the token redacted.
func TestAgentLogsRedactedURL(t *testing.T) {
	const secret = "agent-s3cr3t-token-42"
	opts := bustest.DefaultOptions()
	opts.Authorization = secret
	srv := bustest.RunServer(t, &opts)
	url := "nats://" + secret + "@" + srv.Addr().String()
	a := startAgent(t, t.TempDir(), "--nats-url", url)
	a.natsURL = url // the agent reports the redacted one
	if out := a.mustCLI("list"); !strings.HasPrefix(out, "NAME") {
		t.Fatalf("list through the external server: %q", out)
	}
	a.stop()
	<-a.scanned
	log := a.stderr.String()
	if strings.Contains(log, secret) || strings.Contains(log, "s3cr3t") {
		t.Fatalf("agent log shows the token:\n%s", log)
	}
	if !strings.Contains(log, "nats://***@"+srv.Addr().String()) {
		t.Fatalf("agent log does not name the server, redacted:\n%s", log)
	}
}

// Issue 7, defect 15: the agent's log, at debug level and through define,
// list, events, history, a bad request and SIGTERM, is JSON lines without
// a duplicate key (the harness checks every agent's log the same way at
// the end of each test; this test makes sure the check has lines from
// every component to bite on).
func TestAgentLogHasNoDuplicateKeys(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, filepath.Join(dir, "state"), "--log-level", "debug")
	a.mustCLI("define", writeFile(t, dir, "web1.json", webJSON))
	a.mustCLI("list")
	a.mustCLI("events")
	a.mustCLI("history", "web1")
	if _, _, code := a.cli("start", "nosuch"); code != exitNotFound {
		t.Fatalf("start nosuch: exit %d", code)
	}
	a.stop()
	<-a.scanned
	log := a.stderr.Bytes()
	for _, comp := range []string{`"component":"nats-server"`, `"component":"nats"`, `"component":"relay"`} {
		if !strings.Contains(string(log), comp) {
			t.Errorf("no line with %s", comp)
		}
	}
	if bad := bustest.CheckLogLines(log); len(bad) > 0 {
		t.Fatalf("%d bad lines:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
