package bus

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vmledger/vmledger/domains"
)

// TLSOptions is the embedded server's TLS (docs/bus.md, TLS). With it set
// every TCP client must speak TLS; in-process connections (the agent's
// own, Embedded.Connect) stay in memory and need none.
type TLSOptions struct {
	// CertFile and KeyFile are the server's certificate chain and key, PEM.
	CertFile, KeyFile string
	// CAFile, PEM, is the CA client certificates are checked against, and
	// that routes (Cluster) trust for each other.
	CAFile string
	// Verify requires every client to present a certificate CAFile signed
	// (mutual TLS); the client still authenticates with its token or nkey.
	Verify bool
}

// tlsTimeout bounds the handshake; nats-server's default of 2 s is short
// for a loaded machine.
const tlsTimeout = 5 * time.Second

// config builds the server side; routes get the same certificate, also
// used as a client certificate when dialling, and trust CAFile.
func (t *TLSOptions) config(route bool) (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "NATS TLS: a certificate and its key are both needed (--nats-tls-cert, --nats-tls-key)")
	}
	if (t.Verify || route) && t.CAFile == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "NATS TLS: checking client or route certificates needs the CA that signs them (--nats-tls-ca)")
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.Verify || route})
	if err != nil {
		return nil, domains.Errorf(domains.CodeInvalid, "NATS TLS: %w", err)
	}
	if route {
		// A route dials its peers as a client: it checks their server
		// certificates against the same CA.
		c.RootCAs = c.ClientCAs
	}
	return c, nil
}

// tlsOpts puts TLS on the client listener and, with a cluster, on routes.
func tlsOpts(opts *server.Options, t *TLSOptions) error {
	c, err := t.config(false)
	if err != nil {
		return err
	}
	opts.TLS, opts.TLSVerify, opts.TLSConfig, opts.TLSTimeout = true, t.Verify, c, tlsTimeout.Seconds()
	if opts.Cluster.Port != 0 {
		rc, err := t.config(true)
		if err != nil {
			return err
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = rc, tlsTimeout.Seconds()
	}
	return nil
}

// IsLoopback reports whether a listen host reaches this machine only
// (localhost, 127.0.0.0/8, ::1). Anything else, "" and 0.0.0.0 included,
// is reachable from the network.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckExposure refuses an embedded server (or its route listener) on a
// non-loopback host without TLS, unless insecure: tokens and nkey
// signatures cross the network, and anyone on the path reads consoles
// and events. what names the flag, for the message.
func CheckExposure(what, host string, tls *TLSOptions, insecure bool) error {
	if IsLoopback(host) || tls != nil || insecure {
		return nil
	}
	return domains.Errorf(domains.CodeInvalid,
		"%s %s: listening beyond loopback needs TLS (--nats-tls-cert, --nats-tls-key; --nats-tls-ca with routes): without it tokens, events and consoles cross the network in clear; --insecure to accept that",
		what, domains.Quote(host))
}

// tlsLabel is for the ready log line.
func tlsLabel(t *TLSOptions) string {
	switch {
	case t == nil:
		return "off"
	case t.Verify:
		return "mutual"
	}
	return "server"
}
