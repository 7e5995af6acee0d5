package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
)

// globals are the flags every client verb shares.
type globals struct {
	natsURL string
	host    string
	creds   string
	token   string
	tokenF  string
	nkey    string
	ident   string
	timeout time.Duration
	json    bool
	tls     tlsFlags // security_flags.go
}

const defaultNATSURL = "nats://127.0.0.1:4222"

func (g *globals) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.natsURL, "nats-url", envOr("VMLEDGER_NATS_URL", defaultNATSURL), "NATS server URL(s), comma-separated (env VMLEDGER_NATS_URL)")
	f.StringVar(&g.host, "host", envOr("VMLEDGER_HOST", defaultHost()), "agent host name, a NATS subject token (env VMLEDGER_HOST)")
	f.StringVar(&g.creds, "nats-creds", os.Getenv("VMLEDGER_NATS_CREDS"), "NATS credentials file (env VMLEDGER_NATS_CREDS)")
	f.StringVar(&g.token, "nats-token", os.Getenv("VMLEDGER_NATS_TOKEN"), "NATS token (env VMLEDGER_NATS_TOKEN); default: read from --nats-token-file")
	f.StringVar(&g.tokenF, "nats-token-file", envOr("VMLEDGER_NATS_TOKEN_FILE", filepath.Join(defaultStateDir(), "nats.token")),
		"file holding the embedded NATS server's token, used when it exists and no token is given (env VMLEDGER_NATS_TOKEN_FILE)")
	f.StringVar(&g.ident, "nats-identity", os.Getenv("VMLEDGER_NATS_IDENTITY"),
		"embedded NATS identity: operator, readonly or console, read from nats-users/ROLE.nk beside --nats-token-file; the server enforces its rights (env VMLEDGER_NATS_IDENTITY)")
	f.StringVar(&g.nkey, "nats-nkey", os.Getenv("VMLEDGER_NATS_NKEY"),
		"NATS nkey seed file, e.g. a copy of the agent's nats-users/readonly.nk; its role (for the reply inbox) is --nats-identity or the file's base name (env VMLEDGER_NATS_NKEY)")
	g.tls.register(f)
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for a slow agent (nothing listening, refused credentials and no agent for --host fail at once)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// defaultHost is the machine's short host name made into a NATS token.
func defaultHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	h, _, _ = strings.Cut(h, ".")
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, h)
}

// dial connects to NATS; the caller closes the connection. It tries each
// server once (FailFast): nothing listening, or credentials refused, is
// an error at once, naming the URL (redacted) and where the token came
// from, instead of a wait for --timeout.
func (g *globals) dial(ctx context.Context) (*nats.Conn, *bus.Client, error) {
	if !domains.ValidName(g.host) {
		return nil, nil, usagef("--host %s: must be a NATS subject token (letters, digits, '-', '_')", domains.Quote(g.host))
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if g.ident != "" && !slices.Contains(bus.Roles(), bus.Role(g.ident)) {
		return nil, nil, usagef("--nats-identity %s: want operator, readonly or console (or agent)", domains.Quote(g.ident))
	}
	co := bus.ConnectOptions{Name: "vmledger-cli", CredsFile: g.creds, FailFast: true}
	g.tls.apply(&co)
	from := ""
	if file, role := g.identity(); file != "" {
		co.NKeyFile, co.InboxPrefix, from = file, role.InboxPrefix(), "the identity in "+file
	} else {
		co.Token, from = g.natsToken()
	}
	nc, err := bus.Connect(cctx, g.natsURL, co)
	if err != nil {
		return nil, nil, domains.Errorf(domains.CodeUnavailable, "%w%s%s", err, g.connectHint(err, from), g.tls.hint(err))
	}
	return nc, bus.NewClient(nc, g.host), nil
}

// connectHint says what to check after a failed connection: for refused
// credentials, which ones were used.
func (g *globals) connectHint(err error, tokenFrom string) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		if g.creds != "" {
			return "; the server refused the credentials in " + g.creds
		}
		return "; the server refused " + tokenFrom
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, syscall.ECONNREFUSED):
		return "; is the agent (or the NATS server) running, and is --nats-url right?"
	}
	return ""
}

// call sends one command and decodes the reply into resp.
func (g *globals) call(ctx context.Context, verb string, req, resp any) error {
	nc, c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	return c.Call(cctx, verb, req, resp)
}

// identity is the nkey seed file and role of --nats-nkey or
// --nats-identity; none means token authentication.
func (g *globals) identity() (string, bus.Role) {
	switch {
	case g.nkey != "":
		role := bus.Role(g.ident)
		if role == "" {
			role = bus.Role(strings.TrimSuffix(filepath.Base(g.nkey), ".nk"))
		}
		return g.nkey, role
	case g.ident != "":
		return agent.IdentityFile(filepath.Dir(g.tokenF), bus.Role(g.ident)), bus.Role(g.ident)
	}
	return "", ""
}

// natsToken is --nats-token, else the token file's content when it can be
// read (the agent's embedded server writes it; only who may read the
// state directory gets it), else none. from says which, for errors; it
// never holds the token.
func (g *globals) natsToken() (token, from string) {
	if bus.RedactURL(g.natsURL) != g.natsURL {
		// nats.go prefers the URL's user information over a token option.
		return "", "the credentials in --nats-url"
	}
	if g.token != "" {
		return g.token, "the token given by --nats-token or VMLEDGER_NATS_TOKEN"
	}
	b, err := os.ReadFile(g.tokenF)
	switch {
	case err == nil:
		return strings.TrimSpace(string(b)), "the token in " + g.tokenF + " (--nats-token-file)"
	case errors.Is(err, fs.ErrNotExist):
		return "", "the connection without a token: " + g.tokenF + " (--nats-token-file) does not exist"
	}
	return "", "the connection without a token: " + g.tokenF + " (--nats-token-file) could not be read: " + err.Error()
}
