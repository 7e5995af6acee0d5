package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ConnectOptions configures a client connection. At most one of CredsFile,
// User/Password and Token is normally set.
type ConnectOptions struct {
	// Name identifies the connection in server monitoring (e.g.
	// "vmledger-agent host1").
	Name string
	// CredsFile is a NATS .creds file (JWT + NKey seed).
	CredsFile string
	// User and Password for user/password authentication.
	User, Password string
	// Token for token authentication.
	Token string
	// NKeyFile holds a user nkey seed (an identity file the agent wrote,
	// docs/bus.md Identities); it wins over Token.
	NKeyFile string
	// InboxPrefix replaces _INBOX for replies; a role's identity may
	// subscribe only to its own (Role.InboxPrefix).
	InboxPrefix string
	// CAFile, CertFile and KeyFile enable TLS with a private CA and/or a
	// client certificate.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds each TCP+TLS connect attempt; default 2s.
	DialTimeout time.Duration
	// FailFast makes the first connection one attempt per server, so a
	// refused connection or refused credentials come back at once (the
	// CLI: a user waiting 30 s to learn nothing listens is a defect).
	// Without it (the agent) the first connection is retried like a
	// reconnect until ctx ends, each failure logged.
	FailFast bool
	// Logger receives connection state changes (as component "nats"); the
	// zero value discards.
	Logger zerolog.Logger
}

// Reconnect backoff bounds. Short first retries matter for the embedded and
// loopback cases (a restart takes milliseconds); the cap keeps a dead
// cluster from being hammered.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 2 * time.Second
)

// Connect dials url (one server, or a comma-separated list of cluster
// members) and waits under ctx until the first connection is up. Once
// connected, it reconnects forever with capped, jittered exponential
// backoff; it never gives up on its own: close it to stop.
//
// The reconnect buffer is disabled (ReconnectBufSize -1): while the
// connection is down, Publish fails at once with ErrReconnectBufExceeded
// instead of queueing in memory. With a buffer, a publish made during an
// outage returns nil and the relay would have no way to tell a queued
// message from a delivered one; the buffer is also lost if the connection
// closes or the process dies. Every publisher in vmledger has its own,
// better recovery: the relay re-reads the store from its last confirmed
// position, and command callers retry with the same command ID. Data
// written to a socket that dies is covered separately: the relay compares
// the connection's reconnect count around each flush (see Relay).
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	return connect(ctx, url, o)
}

func connect(ctx context.Context, url string, o ConnectOptions, extra ...nats.Option) (*nats.Conn, error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	log := o.Logger.With().Str("component", "nats").Logger()
	shown := RedactURL(url)
	clean := func(err error) error {
		return &scrubbedError{msg: scrub(err.Error(), url, o.Token, o.Password), cause: err}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.DialTimeout),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(!o.FailFast),
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		// Detect a dead peer in ~30s instead of the default 4 minutes; a
		// blocked socket write fails after 10s instead of stalling.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.FlusherTimeout(10 * time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			ev := log.Warn().Str("servers", shown)
			if err != nil {
				ev = ev.Err(clean(err))
			}
			ev.Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", RedactURL(nc.ConnectedUrl())).Msg("nats reconnected")
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Warn().Err(clean(err)).Str("servers", shown).Msg("nats connection attempt failed; retrying")
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Debug().Msg("nats connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(clean(err))
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS identity %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	// The error names the servers, redacted, and never quotes a secret:
	// nats.go and url.Parse errors may carry the URL as given.
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", shown, clean(err))
	}
	if err := waitConnected(ctx, nc); err != nil {
		if last := nc.LastError(); last != nil && !errors.Is(err, last) {
			// Retried until ctx ended: say why the attempts failed.
			err = fmt.Errorf("%w (last attempt: %w)", err, last)
		}
		nc.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", shown, clean(err))
	}
	log.Info().Str("server", RedactURL(nc.ConnectedUrl())).Int64("max_payload", nc.MaxPayload()).Msg("nats connected")
	return nc, nil
}

func reconnectDelay(attempts int) time.Duration {
	d := backoffMax
	if attempts < 16 {
		d = min(backoffMin<<attempts, backoffMax)
	}
	// ±20% jitter so a fleet of agents does not reconnect in lockstep.
	return d - d/5 + rand.N(2*d/5+1)
}

// waitConnected blocks until nc is connected, nc is closed, or ctx ends.
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	// Register first, then check: a CONNECTED event between the check and
	// the registration would otherwise be missed.
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	for {
		if nc.IsConnected() {
			return nil
		}
		if nc.IsClosed() {
			if err := nc.LastError(); err != nil {
				return fmt.Errorf("connection closed: %w", err)
			}
			return nats.ErrConnectionClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
