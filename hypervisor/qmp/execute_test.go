package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

func TestExecute(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.ExpectArgs("qom-get", `{"path": "/machine", "property": "type"}`, qmptest.Return("pc-i440fx-7.2-machine")),
		qmptest.Expect("nosuch", qmptest.Fail("CommandNotFound", "The command nosuch has not been found")),
		qmptest.Expect("query-status", qmptest.Return("not an object")),
		qmptest.Expect("cont", qmptest.Empty()),
	)
	c := dial(t, srv)
	ctx := ctxTimeout(t, 5*time.Second)

	var typ string
	args := map[string]string{"path": "/machine", "property": "type"}
	if err := c.Execute(ctx, "qom-get", args, &typ); err != nil || typ != "pc-i440fx-7.2-machine" {
		t.Fatalf("qom-get = %q, %v", typ, err)
	}

	err := c.Execute(ctx, "nosuch", nil, nil)
	var qerr *qmp.Error
	if !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" || !strings.Contains(qerr.Desc, "nosuch") {
		t.Fatalf("err = %v, want *qmp.Error CommandNotFound", err)
	}
	if errors.Is(err, qmp.ErrDisconnected) {
		t.Errorf("a QMP error must not look like a disconnect: %v", err)
	}

	var st qmp.Status
	if err := c.Execute(ctx, "query-status", nil, &st); !errContains(err, "decode result") {
		t.Errorf("err = %v, want a decode error", err)
	}

	// Arguments that cannot be a QMP object are refused before anything is
	// sent: the next command the server sees is cont.
	if err := c.Execute(ctx, "bogus", []int{1}, nil); err == nil {
		t.Error("array arguments accepted")
	}
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatalf("cont after errors: %v", err)
	}
	if c.Err() != nil {
		t.Errorf("connection died: %v", c.Err())
	}
}

func TestExecuteIDsMonotonic(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Expect("a", qmptest.Empty()), qmptest.Expect("b", qmptest.Empty()), qmptest.Expect("c", qmptest.Empty()))
	c := dial(t, srv)
	for _, cmd := range []string{"a", "b", "c"} {
		if err := c.Execute(ctxTimeout(t, 5*time.Second), cmd, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for _, cmd := range srv.Commands() {
		var id uint64
		if err := json.Unmarshal(cmd.ID, &id); err != nil {
			t.Fatalf("%s: id %s: %v", cmd.Execute, cmd.ID, err)
		}
		if id <= last {
			t.Errorf("%s: id %d after %d", cmd.Execute, id, last)
		}
		last = id
	}
}

func TestReplyOverOneMiB(t *testing.T) {
	for _, size := range []int{1<<20 + 1, 5 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			big := strings.Repeat("x", size)
			srv := qmptest.NewServer(t, qmptest.Handshake(),
				qmptest.Expect("query-qmp-schema", qmptest.Return(big)),
				qmptest.Expect("query-status", qmptest.Return(map[string]any{"status": "running", "running": true})))
			c := dial(t, srv)
			var got string
			if err := c.Execute(ctxTimeout(t, 10*time.Second), "query-qmp-schema", nil, &got); err != nil {
				t.Fatal(err)
			}
			if got != big {
				t.Fatalf("got %d bytes, want %d", len(got), len(big))
			}
			// The stream is still in step after the big line.
			if st, err := c.QueryStatus(ctxTimeout(t, 5*time.Second)); err != nil || !st.Running {
				t.Fatalf("QueryStatus = %+v, %v", st, err)
			}
		})
	}
}

func TestLineOverLimit(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Expect("query-qmp-schema", qmptest.Return(strings.Repeat("x", 4096))))
	c := dial(t, srv, qmp.WithMaxLineBytes(1024))
	err := c.Execute(ctxTimeout(t, 5*time.Second), "query-qmp-schema", nil, nil)
	if !errors.Is(err, qmp.ErrProtocol) || !errContains(err, "more than 1024 bytes") {
		t.Fatalf("err = %v, want ErrProtocol for a long line", err)
	}
}

// TestGarbage: whatever is not QMP closes the connection, and the pending
// call (and every later one) fails with ErrProtocol and ErrDisconnected and
// a description of the offending line.
func TestGarbage(t *testing.T) {
	tests := []struct {
		name, line, wantInErr string
	}{
		{"not JSON", "Segmentation fault", `"Segmentation fault"`},
		{"JSON array", `[1, 2, 3]`, `[1, 2, 3]`},
		{"unknown object", `{"hello": "world"}`, "not exactly one"},
		{"truncated JSON", `{"return": {"status": `, "invalid JSON"},
		{"reply without id", `{"error": {"class": "GenericError", "desc": "JSON parse error"}}`, "reply without id"},
		{"reply to id never sent", `{"return": {}, "id": 999}`, "never sent"},
		{"string id", `{"return": {}, "id": "x"}`, "not one this client sends"},
		{"greeting again", qmptest.DefaultGreeting, "greeting after handshake"},
		{"huge garbage", strings.Repeat("#", 3<<20), "3145728 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := qmptest.NewServer(t, qmptest.Handshake(),
				qmptest.Receive("query-status"), qmptest.Send(tt.line))
			c := dial(t, srv)
			start := time.Now()
			_, err := c.QueryStatus(ctxTimeout(t, 10*time.Second))
			if !errors.Is(err, qmp.ErrProtocol) || !errors.Is(err, qmp.ErrDisconnected) {
				t.Fatalf("err = %v, want ErrProtocol and ErrDisconnected", err)
			}
			if !errContains(err, tt.wantInErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantInErr)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error message is %d bytes; the line must be truncated", len(err.Error()))
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			waitDone(t, c)
			waitEventsClosed(t, c)
			if !errors.Is(c.Err(), qmp.ErrProtocol) {
				t.Errorf("Err() = %v", c.Err())
			}
			if err := c.Cont(ctxTimeout(t, time.Second)); !errors.Is(err, qmp.ErrProtocol) {
				t.Errorf("call after protocol error: %v", err)
			}
		})
	}
}

func TestDisconnectMidCommand(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.Receive("query-status"), qmptest.Hangup())
	c := dial(t, srv)
	_, err := c.QueryStatus(ctxTimeout(t, 10*time.Second))
	if !errors.Is(err, qmp.ErrDisconnected) || !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want ErrDisconnected wrapping EOF", err)
	}
	if errors.Is(err, qmp.ErrProtocol) {
		t.Errorf("a hang-up is not a protocol error: %v", err)
	}
	waitDone(t, c)
	waitEventsClosed(t, c)
	if !errors.Is(c.Err(), qmp.ErrDisconnected) {
		t.Errorf("Err() = %v", c.Err())
	}
	start := time.Now()
	if err := c.Stop(ctxTimeout(t, 5*time.Second)); !errors.Is(err, qmp.ErrDisconnected) || time.Since(start) > time.Second {
		t.Errorf("call after disconnect: %v after %v", err, time.Since(start))
	}
}

func TestDisconnectFailsAllPending(t *testing.T) {
	const n = 10
	release := make(chan struct{})
	steps := []qmptest.Step{qmptest.Handshake()}
	for range n {
		steps = append(steps, qmptest.Receive("stop"))
	}
	steps = append(steps, qmptest.WaitFor(release), qmptest.Hangup())
	srv := qmptest.NewServer(t, steps...)
	c := dial(t, srv)

	errs := make(chan error, n)
	for range n {
		go func() { errs <- c.Stop(ctxTimeout(t, 10*time.Second)) }()
	}
	waitCommands(t, srv, n+1)
	close(release)
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, qmp.ErrDisconnected) {
				t.Errorf("err = %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("pending call not failed promptly")
		}
	}
}

func TestNoReplyCtxDeadline(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.Receive("query-status"))
	c := dial(t, srv)
	start := time.Now()
	_, err := c.QueryStatus(ctxTimeout(t, 150*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if c.Err() != nil {
		t.Errorf("a timed-out call must not kill the connection: %v", c.Err())
	}
}

func TestCtxAlreadyDone(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake())
	c := dial(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Cont(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n := len(srv.Commands()); n != 1 {
		t.Errorf("server got %d commands, want only qmp_capabilities", n)
	}
}

func TestLateReplyDiscarded(t *testing.T) {
	gaveUp := make(chan struct{})
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Receive("query-status"),
		qmptest.WaitFor(gaveUp),
		qmptest.ReplyTo("query-status", qmptest.Return(map[string]any{"status": "paused", "running": false})),
		qmptest.Expect("query-status", qmptest.Return(map[string]any{"status": "running", "running": true})),
	)
	c := dial(t, srv)
	if _, err := c.QueryStatus(ctxTimeout(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(gaveUp)
	st, err := c.QueryStatus(ctxTimeout(t, 5*time.Second))
	if err != nil || st.Status != "running" {
		t.Fatalf("second call got %+v, %v; want its own reply, not the late one", st, err)
	}
	if got := c.Stats().LateReplies; got != 1 {
		t.Errorf("LateReplies = %d, want 1", got)
	}
}

func TestOutOfOrderReplies(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Receive("first"), qmptest.Receive("second"),
		qmptest.ReplyTo("second", qmptest.Return("two")),
		qmptest.ReplyTo("first", qmptest.Return("one")))
	c := dial(t, srv)

	got := make(map[string]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := func(cmd string) {
		defer wg.Done()
		var s string
		if err := c.Execute(ctxTimeout(t, 5*time.Second), cmd, nil, &s); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
		mu.Lock()
		got[cmd] = s
		mu.Unlock()
	}
	wg.Add(2)
	go run("first")
	waitCommands(t, srv, 2) // qmp_capabilities + first
	go run("second")
	wg.Wait()
	if got["first"] != "one" || got["second"] != "two" {
		t.Errorf("got %v", got)
	}
}

// TestConcurrentExecute answers 50 concurrent commands in reverse order.
func TestConcurrentExecute(t *testing.T) {
	const n = 50
	reverse := func(p *qmptest.Peer) error {
		var cmds []qmptest.Command
		for range n {
			c, err := p.ReadCommand()
			if err != nil {
				return err
			}
			cmds = append(cmds, c)
		}
		for i := n - 1; i >= 0; i-- {
			if err := p.Reply(cmds[i], qmptest.Return(cmds[i].Arguments)); err != nil {
				return err
			}
		}
		return nil
	}
	srv := qmptest.NewServer(t, qmptest.Handshake(), reverse)
	c := dial(t, srv)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var got struct{ N int }
			err := c.Execute(ctxTimeout(t, 5*time.Second), "echo", map[string]int{"n": i}, &got)
			if err != nil || got.N != i {
				t.Errorf("call %d got %d, %v", i, got.N, err)
			}
		})
	}
	wg.Wait()
}

func TestClose(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.Receive("query-status"))
	c := dial(t, srv)
	errc := make(chan error, 1)
	go func() {
		_, err := c.QueryStatus(ctxTimeout(t, 10*time.Second))
		errc <- err
	}()
	waitCommands(t, srv, 2)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, qmp.ErrClosed) {
			t.Errorf("pending call: %v, want ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("pending call not failed by Close")
	}
	if !errors.Is(c.Err(), qmp.ErrClosed) {
		t.Errorf("Err() = %v", c.Err())
	}
	if err := c.Cont(ctxTimeout(t, time.Second)); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
	waitDone(t, c)
	waitEventsClosed(t, c)
}
