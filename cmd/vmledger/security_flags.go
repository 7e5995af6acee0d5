package main

import (
	"errors"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
)

// registerSecurityFlags adds the agent's TLS, exposure and confinement
// flags (docs/bus.md, TLS; docs/security.md).
func registerSecurityFlags(f *pflag.FlagSet, s *agent.Security) {
	f.StringVar(&s.NATSTLSCert, "nats-tls-cert", os.Getenv("VMLEDGER_NATS_TLS_CERT"), "PEM certificate: the embedded NATS server's (TLS for every TCP client and route); with --nats-url, the agent's client certificate")
	f.StringVar(&s.NATSTLSKey, "nats-tls-key", os.Getenv("VMLEDGER_NATS_TLS_KEY"), "PEM key of --nats-tls-cert")
	f.StringVar(&s.NATSTLSCA, "nats-tls-ca", os.Getenv("VMLEDGER_NATS_TLS_CA"), "PEM CA: client and route certificates are checked against it (embedded server); with --nats-url, the server's certificate is")
	f.BoolVar(&s.NATSTLSVerify, "nats-tls-verify", false, "mutual TLS: every client of the embedded server must present a certificate of --nats-tls-ca (besides its token or nkey)")
	f.BoolVar(&s.Insecure, "insecure", false, "let --nats-listen or --nats-cluster-listen be a non-loopback address without TLS (tokens, events and consoles then cross the network in clear)")
	f.StringArrayVar(&s.AllowDevices, "allow-device", nil, "a block or character device a domain's disks may name (repeatable; matched by device number); every other device is refused")
	f.StringVar(&s.QEMUUser, "qemu-user", "", "run QEMU as this unprivileged user (the agent must be root); the run directory is given to it, and disks, kernels and images must be readable (and disks writable) by it")
}

// tlsFlags are the CLI's TLS client options.
type tlsFlags struct{ ca, cert, key string }

func (t *tlsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&t.ca, "nats-tls-ca", os.Getenv("VMLEDGER_NATS_TLS_CA"), "PEM CA the NATS server's certificate is checked against, for a TLS server (tls:// or one that requires TLS) (env VMLEDGER_NATS_TLS_CA)")
	f.StringVar(&t.cert, "nats-tls-cert", os.Getenv("VMLEDGER_NATS_TLS_CERT"), "PEM client certificate, for a server that wants one (agent --nats-tls-verify) (env VMLEDGER_NATS_TLS_CERT)")
	f.StringVar(&t.key, "nats-tls-key", os.Getenv("VMLEDGER_NATS_TLS_KEY"), "PEM key of --nats-tls-cert (env VMLEDGER_NATS_TLS_KEY)")
}

func (t *tlsFlags) apply(co *bus.ConnectOptions) {
	co.CAFile, co.CertFile, co.KeyFile = t.ca, t.cert, t.key
}

// tlsHint says which TLS flag a failed handshake asks for.
func (t *tlsFlags) hint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unknown authority") || strings.Contains(msg, "failed to verify certificate"):
		if t.ca == "" {
			return "; the server's certificate is signed by a CA this client does not trust: give it with --nats-tls-ca"
		}
		return "; the server's certificate is not signed by --nats-tls-ca " + t.ca
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate"):
		return "; the server wants a client certificate of its CA: give --nats-tls-cert and --nats-tls-key"
	case strings.Contains(msg, "after TLS handshake"):
		// TLS 1.3: a refused client certificate shows only as the
		// server closing the connection.
		if t.cert == "" {
			return "; the server closed the connection after the TLS handshake: it probably wants a client certificate of its CA (--nats-tls-cert, --nats-tls-key)"
		}
		return "; the server closed the connection after the TLS handshake: is --nats-tls-cert signed by the CA it trusts?"
	case errors.Is(err, os.ErrNotExist) && (t.ca != "" || t.cert != ""):
		return "; a --nats-tls-* file does not exist"
	}
	return ""
}
