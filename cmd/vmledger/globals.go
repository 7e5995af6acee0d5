package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

// globals are the flags every client verb shares.
type globals struct {
	natsURL string
	host    string
	creds   string
	token   string
	tokenF  string
	timeout time.Duration
	json    bool
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
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for the agent")
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

// dial connects to NATS; the caller closes the connection.
func (g *globals) dial(ctx context.Context) (*nats.Conn, *bus.Client, error) {
	if !domains.ValidName(g.host) {
		return nil, nil, usagef("--host %q: must be a NATS subject token (letters, digits, '-', '_')", g.host)
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	nc, err := bus.Connect(cctx, g.natsURL, bus.ConnectOptions{Name: "vmledger-cli", CredsFile: g.creds, Token: g.natsToken()})
	if err != nil {
		return nil, nil, domains.Errorf(domains.CodeUnavailable, "connect to NATS at %s: %w", g.natsURL, err)
	}
	return nc, bus.NewClient(nc, g.host), nil
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

// natsToken is --nats-token, else the token file's content when it can be
// read (the agent's embedded server writes it; only who may read the
// state directory gets it), else none.
func (g *globals) natsToken() string {
	if g.token != "" {
		return g.token
	}
	if b, err := os.ReadFile(g.tokenF); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}
