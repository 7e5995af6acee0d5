package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// TestWriteBlocked: a peer that stops reading must not hang a call forever.
// The write is cut mid-line, so the connection has to go.
func TestWriteBlocked(t *testing.T) {
	never := make(chan struct{})
	srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.WaitFor(never))
	c, writing := dialWatched(t, srv)
	huge := json.RawMessage(`{"data":"` + strings.Repeat("z", 4<<20) + `"}`) // far beyond socket buffers
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-writing
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	err := c.Execute(ctx, "blob", huge, nil)
	if !errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("err = %v, want ErrDisconnected after a partial write", err)
	}
	waitDone(t, c)
}

// TestWaitBehindStuckWrite: a call queued behind another caller's write that
// cannot finish still honours its own ctx.
func TestWaitBehindStuckWrite(t *testing.T) {
	never := make(chan struct{})
	srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.WaitFor(never))
	c, writing := dialWatched(t, srv)
	stuck := make(chan error, 1)
	go func() {
		huge := json.RawMessage(`{"data":"` + strings.Repeat("z", 4<<20) + `"}`)
		stuck <- c.Execute(context.Background(), "blob", huge, nil)
	}()
	<-writing

	start := time.Now()
	err := c.Cont(ctxTimeout(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("queued call: %v after %v, want DeadlineExceeded promptly", err, time.Since(start))
	}
	c.Close()
	select {
	case err := <-stuck:
		if !errors.Is(err, qmp.ErrClosed) {
			t.Errorf("stuck call after Close: %v, want ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not unblock a stuck write")
	}
}

// watchedConn reports when a big write starts, so tests can act during it.
type watchedConn struct {
	net.Conn
	once    sync.Once
	writing chan struct{}
}

func (w *watchedConn) Write(p []byte) (int, error) {
	if len(p) > 1<<20 {
		w.once.Do(func() { close(w.writing) })
	}
	return w.Conn.Write(p)
}

// dialWatched is dial through qmp.New with a watchedConn.
func dialWatched(t *testing.T, srv *qmptest.Server) (*qmp.Client, <-chan struct{}) {
	t.Helper()
	conn, err := net.Dial("unix", srv.Path)
	if err != nil {
		t.Fatal(err)
	}
	w := &watchedConn{Conn: conn, writing: make(chan struct{})}
	c, err := qmp.New(ctxTimeout(t, 5*time.Second), w)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, w.writing
}
