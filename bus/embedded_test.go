package bus_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

func TestEmbedded(t *testing.T) {
	e, _ := embedded(t)
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(e.ClientURL(), ":-1") {
		t.Fatalf("ClientURL %q: want loopback with the real port", e.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	inproc, err := e.Connect(ctx, bus.ConnectOptions{Name: "in-process"})
	if err != nil {
		t.Fatal(err)
	}
	defer inproc.Close()
	tcp := bustest.Connect(t, e.ClientURL())
	sub, err := tcp.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	_ = tcp.Flush()
	if err := inproc.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsgWithContext(ctx); err != nil || string(m.Data) != "hi" {
		t.Fatalf("in-process → TCP: %v %v", m, err)
	}

	// The port is taken: a clear error, not a hang until ctx ends.
	port := e.Server().Addr().(*net.TCPAddr).Port
	start := time.Now()
	_, err = bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: port})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("second server on port %d: err %v after %s", port, err, time.Since(start))
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := bus.Connect(ctx, url, bus.ConnectOptions{}); err == nil {
		t.Fatal("connected to nothing")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %s, ctx allowed 300ms", d)
	}
}
