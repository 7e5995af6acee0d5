package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// EmbeddedOptions configures the in-process NATS server.
type EmbeddedOptions struct {
	// Host to listen on; default 127.0.0.1. The bus carries commands that
	// start and destroy guests and has no authentication configured here,
	// so anything but loopback is a deliberate choice and is logged.
	Host string
	// Port to listen on; 0 means 4222, -1 a random free port.
	Port int
	// ServerName shows up in monitoring and logs; default "vmledger".
	ServerName string
	// MaxPayload in bytes; 0 keeps the server default (1 MiB).
	MaxPayload int32
	// Logger receives the server's log (component "nats-server") and the
	// embedding's own lines (component "nats"); the zero value discards.
	Logger zerolog.Logger
	// Debug and Trace enable the server's debug and protocol tracing.
	Debug, Trace bool
	// Token, when set, is required of every client (NATS token auth): the
	// bus carries commands that start and destroy guests, and loopback is
	// reachable by every local user.
	Token string
	// Identities are the nkey users the server accepts, each with its
	// role's permissions (Permissions, with host "*"); with them the Token,
	// if any, gets RoleConsole's rights, not the agent's.
	Identities []Identity
	// ReadVerbs are the verbs open to RoleReadOnly.
	ReadVerbs []string
	// TokenRole is the Token's role with Identities; default RoleConsole.
	TokenRole Role
	// Cluster, when set, listens for routes and joins the given ones
	// (cluster_embedded.go); nil: a lone server.
	Cluster *ClusterOptions
	// TLS, when set, is required of every TCP client, and of routes
	// (tls.go); nil: plain TCP, for loopback.
	TLS *TLSOptions
	// JetStream, when set, enables JetStream on this server (a single
	// host only: not with Cluster; docs/bus.md, Fleet history).
	JetStream *EmbeddedJetStream
}

// EmbeddedJetStream is the embedded server's JetStream.
type EmbeddedJetStream struct {
	// StoreDir holds the streams (the agent: <state-dir>/jetstream).
	StoreDir string
	// Stream is the relay's stream: the read roles may consume it with
	// durable pull consumers (StreamConsumerPermissions).
	Stream string
}

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
	log zerolog.Logger
}

// StartEmbedded starts nats-server in this process and returns once it
// accepts clients, or fails when ctx ends first.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	switch o.Port {
	case 0:
		o.Port = server.DEFAULT_PORT
	case -1:
		o.Port = server.RANDOM_PORT
	}
	if o.ServerName == "" {
		o.ServerName = "vmledger"
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       o.Port,
		MaxPayload: o.MaxPayload,
		// The agent owns signals and the process; the server must not
		// install handlers of its own or exit on SIGTERM behind our back.
		NoSigs: true,
		Debug:  o.Debug,
		Trace:  o.Trace,
		// No HTTP monitor; a cluster and JetStream only when asked for
		// (below): the log is bbolt.
		HTTPPort:      0,
		Authorization: o.Token,
	}
	stream := ""
	if js := o.JetStream; js != nil {
		if err := embeddedJetStream(opts, js, o.Cluster != nil); err != nil {
			return nil, err
		}
		stream = js.Stream
	}
	if len(o.Identities) > 0 {
		a, err := newAuthenticator(o.Identities, o.Token, o.TokenRole, "*", o.ReadVerbs, stream)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		// The nonce is what an nkey client signs; the server sends one only
		// for its own nkeys unless told to.
		opts.Authorization, opts.CustomClientAuthentication, opts.AlwaysEnableNonce = "", a, true
	}
	if o.Cluster != nil {
		c := *o.Cluster
		if err := clusterOpts(opts, &c, o.Token); err != nil {
			return nil, err
		}
	}
	if o.TLS != nil {
		if err := tlsOpts(opts, o.TLS); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	// Fatalf is how the server reports a failed listen (port taken); it
	// does not exit, so the wait below would spin until ctx ends without
	// this channel.
	fatal := make(chan string, 1)
	srv.SetLoggerV2(serverLogger{l: o.Logger.With().Str("component", "nats-server").Logger(), fatal: fatal}, o.Debug, o.Trace, false)
	log := o.Logger.With().Str("component", "nats").Logger()
	if !IsLoopback(o.Host) && o.TLS == nil {
		log.Warn().Str("host", o.Host).Msg("embedded NATS listens beyond loopback: anyone who can reach it can command this agent")
	}
	go srv.Start()
	// ReadyForConnections only takes a duration, so wait in short slices
	// and give ctx the last word.
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s:%d: %s", o.Host, o.Port, msg)
		default:
		}
		if err := ctx.Err(); err != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s:%d: not ready: %w", o.Host, o.Port, err)
		}
	}
	e := &Embedded{srv: srv, log: log}
	e.log.Info().Str("url", e.ClientURL()).Str("tls", tlsLabel(o.TLS)).Msg("embedded NATS ready")
	return e, nil
}

// ClientURL is the URL clients dial, with the real port when Port was -1.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Connect is Connect for the agent's own connection: in-process, over a
// pipe instead of loopback TCP, which takes the kernel out of the relay's
// hop (docs/bus.md, Performance). Everything else, reconnect policy
// included, is Connect's.
func (e *Embedded) Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	// nats://, not the tls:// of a TLS server: in process there is no
	// wire to protect, and the server does not require TLS there.
	url := strings.Replace(e.ClientURL(), "tls://", "nats://", 1)
	return connect(ctx, url, o, nats.InProcessServer(e.srv))
}

// Server exposes the nats-server for in-process wiring and tests.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server; it returns ctx's error if the server has not
// finished by then (it keeps shutting down in the background).
func (e *Embedded) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("embedded nats shutdown: %w", ctx.Err())
	}
}

// serverLogger adapts zerolog to nats-server's Logger interface.
type serverLogger struct {
	l     zerolog.Logger
	fatal chan<- string
}

func (s serverLogger) Noticef(f string, v ...any) { s.l.Info().Msgf(f, v...) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn().Msgf(f, v...) }
func (s serverLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	s.l.Error().Msg(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLogger) Errorf(f string, v ...any) { s.l.Error().Msgf(f, v...) }
func (s serverLogger) Debugf(f string, v ...any) { s.l.Debug().Msgf(f, v...) }
func (s serverLogger) Tracef(f string, v ...any) { s.l.Trace().Msgf(f, v...) }
