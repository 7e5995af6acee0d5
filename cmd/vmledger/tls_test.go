package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/bus/bustest"
)

// Issue 14 c: the agent's embedded server over mutual TLS; the CLI with
// the CA and a client certificate defines, lists, reads and follows
// events; without the CA or without the certificate it is refused at
// once, saying which flag is missing.
func TestCLIOverTLS(t *testing.T) {
	ca := bustest.NewCA(t, "vmledger-test")
	cert, key := ca.IssueServer("agent")
	ccert, ckey := ca.Issue("operator")
	state := t.TempDir()
	a := startAgent(t, state, "--nats-tls-cert", cert, "--nats-tls-key", key, "--nats-tls-ca", ca.File, "--nats-tls-verify")
	if !strings.HasPrefix(a.natsURL, "tls://127.0.0.1:") {
		t.Fatalf("agent ready at %q, want tls://", a.natsURL)
	}
	base := []string{"--nats-url", a.natsURL, "--host", a.host, "--timeout", "20s",
		"--nats-token-file", filepath.Join(state, "nats.token"), "--nats-identity", "operator"}
	withTLS := append(append([]string(nil), base...), "--nats-tls-ca", ca.File, "--nats-tls-cert", ccert, "--nats-tls-key", ckey)
	cli := func(args ...[]string) (string, string, int) {
		var all []string
		for _, a := range args {
			all = append(all, a...)
		}
		return runCLI(t, all...)
	}
	cfg := writeFile(t, t.TempDir(), "web.json", `{"name":"web","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`)
	for _, args := range [][]string{{"define", cfg}, {"list"}, {"info", "web"}, {"events"}} {
		if out, errs, code := cli(withTLS, args); code != 0 || !strings.Contains(out, "web") && args[0] != "define" {
			t.Fatalf("over TLS %v: exit %d %q %s", args, code, out, errs)
		}
	}
	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"no CA", nil, "--nats-tls-ca"},
		{"no client certificate", []string{"--nats-tls-ca", ca.File}, "--nats-tls-cert"},
		{"another CA", []string{"--nats-tls-ca", bustest.NewCA(t, "other").File}, "not signed by --nats-tls-ca"},
	} {
		_, errs, code := cli(base, c.flags, []string{"list"})
		if code != exitUnavailable || !strings.Contains(errs, c.want) {
			t.Fatalf("%s: exit %d, want %d with %q:\n%s", c.name, code, exitUnavailable, c.want, errs)
		}
		if token := mustRead(t, filepath.Join(state, "nats.token")); strings.Contains(errs, strings.TrimSpace(token)) {
			t.Fatalf("%s: the error shows the token", c.name)
		}
	}
}

// Issue 14 c: listening beyond loopback needs TLS or --insecure: without
// either the agent refuses to start (exit 2, saying so), for clients and
// for routes; with TLS, or with --insecure, it serves.
func TestAgentRefusesClearTextBeyondLoopback(t *testing.T) {
	ca := bustest.NewCA(t, "vmledger-test")
	cert, key := ca.IssueServer("agent")
	tlsArgs := []string{"--nats-tls-cert", cert, "--nats-tls-key", key}
	for _, c := range []struct {
		name string
		args []string
		want string // "" serves
	}{
		{"all interfaces in clear", []string{"--nats-listen", "0.0.0.0:0"}, "--nats-listen \"0.0.0.0\": listening beyond loopback needs TLS"},
		{"routes on all interfaces in clear", []string{"--nats-cluster-listen", "0.0.0.0:0"}, "--nats-cluster-listen \"0.0.0.0\": listening beyond loopback needs TLS"},
		{"routes with TLS but no CA", append([]string{"--nats-cluster-listen", "0.0.0.0:0"}, tlsArgs...), "give --nats-tls-ca"},
		{"verify without a CA", append([]string{"--nats-tls-verify"}, tlsArgs...), "--nats-tls-verify needs --nats-tls-ca"},
		{"a key without a certificate", []string{"--nats-tls-key", key}, "go together"},
		{"all interfaces with TLS", append([]string{"--nats-listen", "0.0.0.0:0"}, tlsArgs...), ""},
		{"routes with TLS and CA", append([]string{"--nats-listen", "0.0.0.0:0", "--nats-cluster-listen", "0.0.0.0:0", "--nats-tls-ca", ca.File}, tlsArgs...), ""},
		{"all interfaces with --insecure", []string{"--nats-listen", "0.0.0.0:0", "--insecure"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			stderr, served, code := runAgent(t, t.TempDir(), append([]string{"--accel", "none"}, c.args...)...)
			switch {
			case c.want == "" && !served:
				t.Fatalf("did not serve (exit %d):\n%s", code, stderr)
			case c.want != "" && (served || code != exitUsage || !strings.Contains(stderr, c.want)):
				t.Fatalf("served %v, exit %d, want %d with %q:\n%s", served, code, exitUsage, c.want, stderr)
			}
		})
	}
}

// Issue 14 c: an external nats-server (Debian's) with mutual TLS, by a
// tls:// URL: the agent connects with its --nats-tls-* client flags and
// the CLI with its own; a CLI without a client certificate is refused.
func TestAgentExternalServerTLS(t *testing.T) {
	ca := bustest.NewCA(t, "vmledger-test")
	cert, key := ca.IssueServer("nats")
	acert, akey := ca.Issue("agent")
	x := bustest.StartExternalConfig(t, bustest.ServerTLSConfig(cert, key, ca))
	url := strings.Replace(x.URL(), "nats://", "tls://", 1)
	a := startAgent(t, t.TempDir(), "--nats-url", url, "--nats-tls-ca", ca.File, "--nats-tls-cert", acert, "--nats-tls-key", akey)
	cfg := writeFile(t, t.TempDir(), "ext.json", `{"name":"ext","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`)
	tlsFlags := []string{"--nats-url", url, "--host", a.host, "--timeout", "20s", "--nats-tls-ca", ca.File, "--nats-tls-cert", acert, "--nats-tls-key", akey}
	if out, errs, code := runCLI(t, append(tlsFlags, "define", cfg)...); code != 0 {
		t.Fatalf("define over TLS: exit %d %s %s", code, out, errs)
	}
	if out, errs, code := runCLI(t, append(tlsFlags, "list")...); code != 0 || !strings.Contains(out, "ext") {
		t.Fatalf("list over TLS: exit %d %q %s", code, out, errs)
	}
	if _, errs, code := runCLI(t, "--nats-url", url, "--host", a.host, "--nats-tls-ca", ca.File, "list"); code != exitUnavailable || !strings.Contains(errs, "--nats-tls-cert") {
		t.Fatalf("list without a client certificate: exit %d %s", code, errs)
	}
}
