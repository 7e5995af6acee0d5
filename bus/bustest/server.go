package bustest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultOptions mirror nats-server's test.DefaultTestOptions: loopback,
// random port, quiet, no signal handlers.
func DefaultOptions() server.Options {
	return server.Options{
		Host:                  "127.0.0.1",
		Port:                  server.RANDOM_PORT,
		NoLog:                 true,
		NoSigs:                true,
		MaxControlLine:        4096,
		DisableShortFirstPing: true,
	}
}

// RunServer starts an in-process nats-server with opts (nil: defaults),
// waits with ReadyForConnections, and shuts it down at the end of the test.
func RunServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	if opts == nil {
		o := DefaultOptions()
		opts = &o
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server: not ready for connections within 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a plain client connection closed at the end of the test.
func Connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
