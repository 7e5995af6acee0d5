package agent

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

// Security is the part of Config that protects the bus and the host
// (docs/bus.md, TLS; docs/security.md).
type Security struct {
	// NATSTLSCert and NATSTLSKey: the embedded server's certificate and
	// key (TLS for every TCP client and route); with --nats-url, the
	// agent's client certificate for the external server.
	NATSTLSCert, NATSTLSKey string
	// NATSTLSCA: the CA client and route certificates are checked against
	// (embedded); with --nats-url, the CA the external server's
	// certificate is checked against.
	NATSTLSCA string
	// NATSTLSVerify requires a client certificate of NATSTLSCA from every
	// client of the embedded server (mutual TLS).
	NATSTLSVerify bool
	// Insecure lets the embedded server or its routes listen beyond
	// loopback without TLS.
	Insecure bool
	// AllowDevices are block or character devices a domain's disks may
	// name (by device number); any other device is refused.
	AllowDevices []string
	// QEMUUser, if set, is the unprivileged user QEMU runs as; the run
	// directory is given to it.
	QEMUUser string
}

// serverTLS is the embedded server's TLS, nil when off.
func (s *Security) serverTLS() *bus.TLSOptions {
	if s.NATSTLSCert == "" && s.NATSTLSKey == "" {
		return nil
	}
	return &bus.TLSOptions{CertFile: s.NATSTLSCert, KeyFile: s.NATSTLSKey, CAFile: s.NATSTLSCA, Verify: s.NATSTLSVerify}
}

// validateSecurity refuses, before anything starts, a bus that would
// listen beyond loopback in clear, and TLS flags that cannot work.
func (a *agent) validateSecurity() error {
	c := &a.cfg
	if c.NATSURL != "" {
		if c.NATSTLSVerify {
			return domains.Errorf(domains.CodeInvalid, "--nats-tls-verify is for the embedded server; with --nats-url the external server decides whether it wants client certificates")
		}
		return nil
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return domains.Errorf(domains.CodeInvalid, "--nats-tls-cert and --nats-tls-key go together")
	}
	t := c.serverTLS()
	if t == nil && (c.NATSTLSCA != "" || c.NATSTLSVerify) {
		return domains.Errorf(domains.CodeInvalid, "--nats-tls-ca and --nats-tls-verify need the server's --nats-tls-cert and --nats-tls-key")
	}
	if t != nil && t.Verify && t.CAFile == "" {
		return domains.Errorf(domains.CodeInvalid, "--nats-tls-verify needs --nats-tls-ca, the CA client certificates are checked against")
	}
	host, _, err := splitListen(c.NATSListen)
	if err != nil {
		return err
	}
	if err := bus.CheckExposure("--nats-listen", host, t, c.Insecure); err != nil {
		return err
	}
	if c.NATSClusterListen != "" {
		ch, _, err := splitListen(c.NATSClusterListen)
		if err != nil {
			return err
		}
		if t != nil && t.CAFile == "" && !bus.IsLoopback(ch) {
			return domains.Errorf(domains.CodeInvalid, "--nats-cluster-listen %s with TLS: routes check each other's certificates, give --nats-tls-ca", domains.Quote(c.NATSClusterListen))
		}
		if err := bus.CheckExposure("--nats-cluster-listen", ch, t, c.Insecure); err != nil {
			return err
		}
	}
	return nil
}

// connectNATS is the agent's own connection: in process to a TLS
// embedded server (nothing crosses a wire, and the agent holds no client
// certificate of its CA), else over TCP, with the TLS flags as client
// options for an external server.
func (a *agent) connectNATS(ctx context.Context, url string, co bus.ConnectOptions) (*nats.Conn, error) {
	if a.embedded != nil && a.cfg.serverTLS() != nil {
		return a.embedded.Connect(ctx, co)
	}
	if a.embedded == nil {
		co.CAFile, co.CertFile, co.KeyFile = a.cfg.NATSTLSCA, a.cfg.NATSTLSCert, a.cfg.NATSTLSKey
	}
	return bus.Connect(ctx, url, co)
}
