package bus_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// syncBuffer collects a logger's lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                    "nats://127.0.0.1:4222",
		"nats://s3cr3t@127.0.0.1:4222":             "nats://***@127.0.0.1:4222",
		"nats://alice:pw@h:1/x?y@z":                "nats://alice:***@h:1/x?y@z",
		"tls://a@b@h:1":                            "tls://***@h:1",
		"tok@h:4222":                               "***@h:4222",
		"nats://t1@a:1, nats://u:p@b:2,nats://c:3": "nats://***@a:1, nats://u:***@b:2,nats://c:3",
		"nats://bad token@h":                       "nats://***@h",
		"":                                         "",
	} {
		if got := bus.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return strconv.Itoa(port)
}

// Issue 7, defects 8 and 13: with FailFast, nothing listening and a
// refused token fail at once (well inside a generous ctx) with an error
// naming the URL without its secret, and errors.Is still sees nats.go's
// cause. No log line of the connection carries the secret either, even
// nats.go's "connected" URL, whose Redacted() would show a token.
func TestConnectFailsFastAndRedacts(t *testing.T) {
	const secret = "s3cr3t-token-XYZ"
	var logs syncBuffer
	log := zerolog.New(&logs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	opts := bustest.DefaultOptions()
	opts.Authorization = "the-right-token"
	srv := bustest.RunServer(t, &opts)
	port := strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name, url string
		token     string
		is        error
	}{
		{"refused connection", "nats://" + secret + "@127.0.0.1:" + closedPort(t), "", nats.ErrNoServers},
		{"wrong token in the URL", "nats://" + secret + "@127.0.0.1:" + port, "", nats.ErrAuthorization},
		{"wrong token option", "nats://127.0.0.1:" + port, secret, nats.ErrAuthorization},
		{"unparsable URL", "nats://" + secret + " x@127.0.0.1:" + port, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			nc, err := bus.Connect(ctx, c.url, bus.ConnectOptions{Token: c.token, FailFast: true, Logger: log})
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if ctx.Err() != nil || time.Since(start) > 30*time.Second {
				t.Fatalf("took until the deadline: %v", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v, want it to wrap %v", err, c.is)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error leaks the secret: %v", err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1:") {
				t.Errorf("error does not name the server: %v", err)
			}
		})
	}
	nc, err := bus.Connect(ctx, "nats://the-right-token@127.0.0.1:"+port, bus.ConnectOptions{FailFast: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	out := logs.Bytes()
	if !bytes.Contains(out, []byte("nats connected")) {
		t.Fatalf("no connected line:\n%s", out)
	}
	if bytes.Contains(out, []byte("the-right-token")) || bytes.Contains(out, []byte("s3cr3t")) {
		t.Fatalf("log leaks a secret:\n%s", out)
	}
	if bad := bustest.CheckLogLines(out); len(bad) > 0 {
		t.Fatalf("log lines: %s", strings.Join(bad, "\n"))
	}
}
