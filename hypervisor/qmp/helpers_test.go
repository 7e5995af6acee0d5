package qmp_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// ctxTimeout returns a context cancelled at the end of the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to srv and closes the client at the end of the test (before
// the server, since cleanups run last-in first-out).
func dial(t *testing.T, srv *qmptest.Server, opts ...qmp.Option) *qmp.Client {
	t.Helper()
	c, err := qmp.Dial(ctxTimeout(t, 5*time.Second), "unix", srv.Path, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextEvent waits for one event; the channel must not be closed.
func nextEvent(t *testing.T, c *qmp.Client) qmp.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("Events() closed, want an event (Err: %v)", c.Err())
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return qmp.Event{}
}

// waitClosed waits for Events() to be closed, draining it.
func waitEventsClosed(t *testing.T, c *qmp.Client) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c.Events():
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("Events() not closed within 5s")
		}
	}
}

func waitDone(t *testing.T, c *qmp.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done() not closed within 5s")
	}
}

// waitCommands waits until srv has received n commands.
func waitCommands(t *testing.T, srv *qmptest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.Commands()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("server got %d commands, want %d", len(srv.Commands()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkGoroutines fails the test if, after a short grace period, more
// goroutines run than before the scenario (goleak is not a dependency).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines, want <= %d; stacks:\n%s", n, before, buf)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func errContains(err error, sub string) bool {
	return err != nil && strings.Contains(err.Error(), sub)
}
