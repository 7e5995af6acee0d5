package qmp_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// TestNoGoroutineLeak runs each scenario, closes client and server, and
// checks that the goroutine count is back where it started. These tests
// must not run in parallel with others.
func TestNoGoroutineLeak(t *testing.T) {
	never := make(chan struct{})
	tests := []struct {
		name   string
		script []qmptest.Step
		use    func(t *testing.T, c *qmp.Client)
	}{
		{
			name:   "idle",
			script: []qmptest.Step{qmptest.Handshake()},
			use:    func(t *testing.T, c *qmp.Client) {},
		},
		{
			name:   "pending call at Close",
			script: []qmptest.Step{qmptest.Handshake(), qmptest.Receive("query-status"), qmptest.WaitFor(never)},
			use: func(t *testing.T, c *qmp.Client) {
				errc := make(chan error, 1)
				go func() { _, err := c.QueryStatus(context.Background()); errc <- err }()
				time.Sleep(50 * time.Millisecond)
				c.Close()
				if err := <-errc; !errors.Is(err, qmp.ErrClosed) {
					t.Errorf("pending call: %v", err)
				}
			},
		},
		{
			name: "unread events at Close",
			script: []qmptest.Step{qmptest.Handshake(),
				qmptest.Event("STOP", nil), qmptest.Event("RESUME", nil), qmptest.Event("STOP", nil)},
			use: func(t *testing.T, c *qmp.Client) { time.Sleep(50 * time.Millisecond) },
		},
		{
			name: "unread events after disconnect",
			script: []qmptest.Step{qmptest.Handshake(),
				qmptest.Event("STOP", nil), qmptest.Hangup()},
			use: func(t *testing.T, c *qmp.Client) { <-c.Done() },
		},
		{
			name:   "protocol error",
			script: []qmptest.Step{qmptest.Handshake(), qmptest.Send("garbage")},
			use:    func(t *testing.T, c *qmp.Client) { <-c.Done() },
		},
		{
			name:   "timed-out call",
			script: []qmptest.Step{qmptest.Handshake(), qmptest.Receive("stop"), qmptest.WaitFor(never)},
			use: func(t *testing.T, c *qmp.Client) {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				c.Stop(ctx)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			srv := qmptest.NewServer(t, tt.script...)
			c, err := qmp.Dial(ctxTimeout(t, 5*time.Second), "unix", srv.Path)
			if err != nil {
				t.Fatal(err)
			}
			tt.use(t, c)
			c.Close()
			c.Close()
			srv.Close()
			checkGoroutines(t, before)
		})
	}

	t.Run("failed handshake", func(t *testing.T) {
		before := runtime.NumGoroutine()
		srv := qmptest.NewServer(t, qmptest.Send("not qmp"))
		if _, err := qmp.Dial(ctxTimeout(t, 5*time.Second), "unix", srv.Path); err == nil {
			t.Fatal("Dial succeeded")
		}
		srv.Close()
		checkGoroutines(t, before)
	})
}
