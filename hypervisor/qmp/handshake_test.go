package qmp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

func TestHandshake(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake())
	c := dial(t, srv)
	want := qmp.Version{Major: 7, Minor: 2, Micro: 0, Package: "qmptest"}
	if got := c.Version(); got != want {
		t.Errorf("Version() = %+v, want %+v", got, want)
	}
	if got := c.Version().String(); got != "7.2.0 (qmptest)" {
		t.Errorf("Version().String() = %q", got)
	}
	if caps := c.Greeting().Capabilities; len(caps) != 1 || caps[0] != "oob" {
		t.Errorf("Capabilities = %v", caps)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v on a live connection", err)
	}
	cmds := srv.Commands()
	if len(cmds) != 1 || cmds[0].Execute != "qmp_capabilities" || cmds[0].Arguments != nil {
		t.Errorf("commands = %+v, want one bare qmp_capabilities", cmds)
	}
}

func TestHandshakeFailures(t *testing.T) {
	never := make(chan struct{}) // a peer that goes silent
	tests := []struct {
		name   string
		script []qmptest.Step
		ctx    func(t *testing.T) context.Context
		opts   []qmp.Option
		// check inspects the error of Dial.
		check func(t *testing.T, err error)
	}{
		{
			name:   "garbage greeting",
			script: []qmptest.Step{qmptest.Send("Welcome to the monitor")},
			check:  wantIs(qmp.ErrProtocol),
		},
		{
			name:   "greeting without version",
			script: []qmptest.Step{qmptest.Send(`{"QMP": {"capabilities": []}}`)},
			check:  wantIs(qmp.ErrProtocol),
		},
		{
			name:   "greeting without capabilities",
			script: []qmptest.Step{qmptest.Send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}}}`)},
			check:  wantIs(qmp.ErrProtocol),
		},
		{
			name: "event instead of greeting",
			script: []qmptest.Step{
				qmptest.Send(`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}`),
			},
			check: wantIs(qmp.ErrProtocol),
		},
		{
			name: "capabilities refused",
			script: []qmptest.Step{qmptest.Greet(),
				qmptest.Expect("qmp_capabilities", qmptest.Fail("CommandNotFound", "The command qmp_capabilities has not been found"))},
			check: func(t *testing.T, err error) {
				var qerr *qmp.Error
				if !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
					t.Errorf("err = %v, want *qmp.Error CommandNotFound", err)
				}
			},
		},
		{
			name: "capabilities returns non-empty",
			script: []qmptest.Step{qmptest.Greet(),
				qmptest.Expect("qmp_capabilities", qmptest.Return(map[string]int{"x": 1}))},
			check: wantIs(qmp.ErrProtocol),
		},
		{
			name: "capabilities reply with wrong id",
			script: []qmptest.Step{qmptest.Greet(),
				qmptest.Expect("qmp_capabilities", qmptest.Empty().WithID("42"))},
			check: wantIs(qmp.ErrProtocol),
		},
		{
			name: "second greeting instead of reply",
			script: []qmptest.Step{qmptest.Greet(),
				qmptest.Receive("qmp_capabilities"), qmptest.Greet()},
			check: wantIs(qmp.ErrProtocol),
		},
		{
			name:   "hangup before greeting",
			script: []qmptest.Step{qmptest.Hangup()},
			check:  wantIs(qmp.ErrDisconnected),
		},
		{
			name:   "hangup before capabilities reply",
			script: []qmptest.Step{qmptest.Greet(), qmptest.Receive("qmp_capabilities"), qmptest.Hangup()},
			check:  wantIs(qmp.ErrDisconnected),
		},
		{
			name:   "no greeting before ctx deadline",
			script: []qmptest.Step{qmptest.WaitFor(never)},
			ctx: func(t *testing.T) context.Context {
				return ctxTimeout(t, 200*time.Millisecond)
			},
			check: wantIs(context.DeadlineExceeded),
		},
		{
			name:   "no greeting before default timeout",
			script: []qmptest.Step{qmptest.WaitFor(never)},
			opts:   []qmp.Option{qmp.WithHandshakeTimeout(200 * time.Millisecond)},
			check:  wantIs(context.DeadlineExceeded),
		},
		{
			name:   "no capabilities reply",
			script: []qmptest.Step{qmptest.Greet(), qmptest.Receive("qmp_capabilities"), qmptest.WaitFor(never)},
			opts:   []qmp.Option{qmp.WithHandshakeTimeout(200 * time.Millisecond)},
			check:  wantIs(context.DeadlineExceeded),
		},
		{
			name:   "ctx cancelled while waiting",
			script: []qmptest.Step{qmptest.WaitFor(never)},
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx
			},
			check: wantIs(context.Canceled),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := qmptest.NewServer(t, tt.script...)
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			start := time.Now()
			c, err := qmp.Dial(ctx, "unix", srv.Path, tt.opts...)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want error")
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("Dial took %v to fail", elapsed)
			}
			tt.check(t, err)
		})
	}
}

func TestDialNoSocket(t *testing.T) {
	_, err := qmp.Dial(context.Background(), "unix", t.TempDir()+"/absent.sock")
	if err == nil {
		t.Fatal("Dial to a missing socket succeeded")
	}
}

func wantIs(target error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("err = %v, want errors.Is %v", err, target)
		}
	}
}
