package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// tlsServer starts an embedded server with TLS (mutual when verify) and
// token auth on a free loopback port.
func tlsServer(t *testing.T, ca *bustest.CA, verify bool) *bus.Embedded {
	t.Helper()
	cert, key := ca.IssueServer("server")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1, Token: "sekrit",
		TLS: &bus.TLSOptions{CertFile: cert, KeyFile: key, CAFile: ca.File, Verify: verify}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// roundTrip proves a connection carries messages.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.SubscribeSync("tls.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("tls.x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("round trip: %v %v", m, err)
	}
}

func dialTLS(url string, o bus.ConnectOptions) (*nats.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o.FailFast, o.DialTimeout = true, 10*time.Second
	if o.Token == "" {
		o.Token = "sekrit"
	}
	return bus.Connect(ctx, url, o)
}

// TestEmbeddedTLS: with TLS on, a client that trusts the CA connects
// (nats:// upgraded, or tls://); a plain client, a client without the CA
// or with another CA is refused; with Verify, a client certificate
// signed by the CA is required; the agent's in-process connection needs
// no TLS.
func TestEmbeddedTLS(t *testing.T) {
	ca, other := bustest.NewCA(t, "vmledger-test"), bustest.NewCA(t, "other")
	okCert, okKey := ca.Issue("client")
	badCert, badKey := other.Issue("client")

	t.Run("server", func(t *testing.T) {
		e := tlsServer(t, ca, false)
		url := e.ClientURL()
		if !strings.HasPrefix(url, "tls://127.0.0.1:") {
			t.Fatalf("ClientURL %q: want tls://", url)
		}
		for _, u := range []string{url, strings.Replace(url, "tls://", "nats://", 1)} {
			nc, err := dialTLS(u, bus.ConnectOptions{CAFile: ca.File})
			if err != nil {
				t.Fatalf("%s with the CA: %v", u, err)
			}
			if _, err := nc.TLSConnectionState(); err != nil {
				t.Fatalf("%s: not TLS: %v", u, err)
			}
			roundTrip(t, nc)
			nc.Close()
		}
		plainRefused(t, e)
		for name, o := range map[string]bus.ConnectOptions{"no CA": {}, "another CA": {CAFile: other.File}} {
			if nc, err := dialTLS(url, o); err == nil {
				nc.Close()
				t.Fatalf("%s: connected", name)
			} else if !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "sekrit") {
				t.Fatalf("%s: %v, want a certificate error without the token", name, err)
			}
		}
	})

	t.Run("mutual", func(t *testing.T) {
		e := tlsServer(t, ca, true)
		url := e.ClientURL()
		nc, err := dialTLS(url, bus.ConnectOptions{CAFile: ca.File, CertFile: okCert, KeyFile: okKey})
		if err != nil {
			t.Fatalf("client certificate of the CA: %v", err)
		}
		roundTrip(t, nc)
		nc.Close()
		for name, o := range map[string]bus.ConnectOptions{
			"no client certificate":          {CAFile: ca.File},
			"certificate of another CA":      {CAFile: ca.File, CertFile: badCert, KeyFile: badKey},
			"right certificate, wrong token": {CAFile: ca.File, CertFile: okCert, KeyFile: okKey, Token: "wrong"},
		} {
			if nc, err := dialTLS(url, o); err == nil {
				nc.Close()
				t.Fatalf("%s: connected", name)
			}
		}
		plainRefused(t, e)
		// The agent's own connection is in process: no TLS, no certificate.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in, err := e.Connect(ctx, bus.ConnectOptions{Token: "sekrit"})
		if err != nil {
			t.Fatalf("in-process: %v", err)
		}
		roundTrip(t, in)
		in.Close()
	})
}

// plainRefused speaks plain NATS to a TLS server, token and all: the
// server announces tls_required and never answers PING with PONG.
func plainRefused(t *testing.T, e *bus.Embedded) {
	t.Helper()
	addr := strings.TrimPrefix(e.ClientURL(), "tls://")
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q, %v: want tls_required", info, err)
	}
	fmt.Fprintf(c, "CONNECT {\"auth_token\":\"sekrit\",\"verbose\":false}\r\nPING\r\n")
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "PONG") {
			t.Fatal("a plain client was served by the TLS server")
		}
		if err != nil {
			return // closed: refused
		}
	}
}

// TestExternalServerTLS: Debian's nats-server configured with TLS and
// verify, reached by a tls:// URL with the CA and a client certificate
// (the agent's and the CLI's --nats-tls-* flags); without the
// certificate it refuses.
func TestExternalServerTLS(t *testing.T) {
	ca := bustest.NewCA(t, "vmledger-test")
	cert, key := ca.IssueServer("server")
	ccert, ckey := ca.Issue("client")
	x := bustest.StartExternalConfig(t, bustest.ServerTLSConfig(cert, key, ca))
	url := strings.Replace(x.URL(), "nats://", "tls://", 1)
	nc, err := dialTLS(url, bus.ConnectOptions{CAFile: ca.File, CertFile: ccert, KeyFile: ckey})
	if err != nil {
		t.Fatalf("tls:// with CA and client certificate: %v", err)
	}
	roundTrip(t, nc)
	nc.Close()
	if nc, err := dialTLS(url, bus.ConnectOptions{CAFile: ca.File}); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
}
