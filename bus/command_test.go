package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// testHandler implements a few verbs with known outcomes.
type testHandler struct {
	mu        sync.Mutex
	deadlines map[string]time.Duration // verb -> time left when called
}

func (h *testHandler) Handle(ctx context.Context, verb string, body []byte) (any, error) {
	if dl, ok := ctx.Deadline(); ok {
		h.mu.Lock()
		h.deadlines[verb] = time.Until(dl)
		h.mu.Unlock()
	}
	switch verb {
	case "echo":
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, domains.Errorf(domains.CodeInvalid, "echo: bad body: %v", err)
		}
		return v, nil
	case "info":
		return nil, domains.Errorf(domains.CodeNotFound, "domain %q not found", "vm-9")
	case "start":
		return nil, domains.Errorf(domains.CodeConflict, "domain is running")
	case "save":
		return nil, errors.New("disk full") // uncoded: internal
	case "dump":
		var m map[string]int
		m["boom"]++ // nil map: panics
		return nil, nil
	case "stuck": // ignores its context
		time.Sleep(300 * time.Millisecond)
		return nil, nil
	case "slow":
		select {
		case <-time.After(300 * time.Millisecond):
			return "done", nil
		case <-ctx.Done():
			return nil, domains.Errorf(domains.CodeUnavailable, "gave up: %w", ctx.Err())
		}
	}
	return nil, fmt.Errorf("verb %s not implemented in test", verb)
}

var verbs = []string{"echo", "info", "start", "save", "dump", "slow", "stuck"}

func startCommands(t *testing.T, o bus.CommandOptions) (*nats.Conn, *testHandler) {
	t.Helper()
	e, nc := embedded(t)
	h := &testHandler{deadlines: map[string]time.Duration{}}
	o.Host, o.Verbs = host, verbs
	s, err := bus.StartCommands(context.Background(), nc, h, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return bustest.Connect(t, e.ClientURL()), h
}

func TestCommandReplies(t *testing.T) {
	cli, _ := startCommands(t, bus.CommandOptions{})
	tests := []struct {
		verb     string
		body     string
		result   string // exact JSON of "result", for successes
		code     string // for errors
		status   string // Nats-Service-Error-Code
		inMsg    string
		sentinel error
	}{
		{verb: "echo", body: `{"a":1}`, result: `{"a":1}`},
		{verb: "echo", body: `{nope`, code: "invalid", status: "400", inMsg: "bad body", sentinel: domains.ErrInvalid},
		{verb: "info", code: "not-found", status: "404", inMsg: `"vm-9" not found`, sentinel: domains.ErrNotFound},
		{verb: "start", code: "conflict", status: "409", inMsg: "running", sentinel: domains.ErrConflict},
		{verb: "save", code: "internal", status: "500", inMsg: "disk full", sentinel: domains.ErrInternal},
		{verb: "dump", code: "internal", status: "500", inMsg: "panic", sentinel: domains.ErrInternal},
		{verb: "bogus", code: "invalid", status: "400", inMsg: `unknown verb "bogus"`, sentinel: domains.ErrInvalid},
		{verb: "a.b", code: "invalid", status: "400", inMsg: `unknown verb "a.b"`, sentinel: nil},
	}
	for _, tc := range tests {
		t.Run(tc.verb+" "+tc.body, func(t *testing.T) {
			// On the wire, as any NATS client sees it.
			m, err := cli.Request("vmledger.cmd."+host+"."+tc.verb, []byte(tc.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Result json.RawMessage `json:"result"`
				Error  *struct{ Code, Message string }
			}
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("%v: %s", err, m.Data)
			}
			if tc.code == "" {
				if r.Error != nil || string(r.Result) != tc.result {
					t.Fatalf("reply %s, want result %s", m.Data, tc.result)
				}
				return
			}
			if r.Error == nil || r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.inMsg) || r.Result != nil {
				t.Fatalf("reply %s, want error %s containing %q", m.Data, tc.code, tc.inMsg)
			}
			if got := m.Header.Get(micro.ErrorCodeHeader); got != tc.status {
				t.Errorf("%s = %q, want %s", micro.ErrorCodeHeader, got, tc.status)
			}
			if m.Header.Get(micro.ErrorHeader) != r.Error.Message {
				t.Errorf("%s = %q, want the message", micro.ErrorHeader, m.Header.Get(micro.ErrorHeader))
			}
			// Through the client: errors.Is across the wire.
			if tc.sentinel == nil {
				return
			}
			err = bus.NewClient(cli, host).Call(context.Background(), tc.verb, json.RawMessage(tc.body), nil)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("Call = %v, want errors.Is %v", err, tc.sentinel)
			}
			var de *domains.Error
			if !errors.As(err, &de) || de.Message != r.Error.Message {
				t.Fatalf("Call = %#v, want *domains.Error with the message", err)
			}
		})
	}
}

func TestCallDecodesResult(t *testing.T) {
	cli, _ := startCommands(t, bus.CommandOptions{})
	var out struct{ Name string }
	if err := bus.NewClient(cli, host).Call(context.Background(), "echo", map[string]string{"name": "vm-1"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != "vm-1" {
		t.Fatalf("result %+v", out)
	}
}

// The agent survives a panicking handler and keeps serving.
func TestCommandPanicDoesNotKillService(t *testing.T) {
	cli, _ := startCommands(t, bus.CommandOptions{})
	c := bus.NewClient(cli, host)
	for range 3 {
		if err := c.Call(context.Background(), "dump", nil, nil); !errors.Is(err, domains.ErrInternal) {
			t.Fatalf("dump: %v", err)
		}
	}
	if err := c.Call(context.Background(), "echo", json.RawMessage(`{}`), nil); err != nil {
		t.Fatalf("echo after panics: %v", err)
	}
}

func TestCommandDeadlines(t *testing.T) {
	cli, h := startCommands(t, bus.CommandOptions{Timeout: 10 * time.Second})
	c := bus.NewClient(cli, host)

	// The caller's shorter deadline reaches the handler, with room for the
	// reply: the caller hears the handler's own error, not a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Call(ctx, "slow", nil, nil)
	if !errors.Is(err, domains.ErrUnavailable) || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("Call = %v, want the handler's gave-up error", err)
	}
	h.mu.Lock()
	left := h.deadlines["slow"]
	h.mu.Unlock()
	if left <= 0 || left >= 100*time.Millisecond {
		t.Fatalf("handler had %s left, want less than the caller's 100ms", left)
	}

	// A handler that ignores its deadline: the caller times out.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = c.Call(ctx, "stuck", nil, nil)
	if !errors.Is(err, domains.ErrUnavailable) || !errors.Is(err, bus.ErrNoAgent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call past its deadline = %v", err)
	}

	// Without a caller deadline, the service's Timeout bounds the handler.
	cli2, h2 := startCommands(t, bus.CommandOptions{Timeout: 50 * time.Millisecond})
	err = bus.NewClient(cli2, host).Call(context.Background(), "slow", nil, nil)
	if !errors.Is(err, domains.ErrUnavailable) || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("Call = %v, want the handler's gave-up error", err)
	}
	h2.mu.Lock()
	defer h2.mu.Unlock()
	if left := h2.deadlines["slow"]; left <= 0 || left > 50*time.Millisecond {
		t.Fatalf("handler had %s left, want at most 50ms", left)
	}
}

// Two calls of one verb run side by side, not one after the other.
func TestCommandConcurrency(t *testing.T) {
	cli, _ := startCommands(t, bus.CommandOptions{})
	c := bus.NewClient(cli, host)
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := c.Call(context.Background(), "slow", nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("4 calls of a 300ms verb took %s: serialised", d)
	}
}

func TestCallWithoutAgent(t *testing.T) {
	e, _ := embedded(t)
	cli := bustest.Connect(t, e.ClientURL())
	err := bus.NewClient(cli, "nobody").Call(context.Background(), "info", nil, nil)
	if !errors.Is(err, domains.ErrUnavailable) || !errors.Is(err, bus.ErrNoAgent) {
		t.Fatalf("Call = %v, want unavailable / ErrNoAgent", err)
	}
	_, err = bus.NewClient(cli, "nobody").History(context.Background(), bus.HistoryRequest{})
	if !errors.Is(err, bus.ErrNoAgent) {
		t.Fatalf("History = %v, want ErrNoAgent", err)
	}
	if err := bus.NewClient(cli, "bad.host").Call(context.Background(), "info", nil, nil); !errors.Is(err, domains.ErrInvalid) {
		t.Fatalf("bad host: %v", err)
	}
}

// micro discovery: $SRV.PING, INFO and STATS answer for "vmledger".
func TestCommandDiscovery(t *testing.T) {
	cli, _ := startCommands(t, bus.CommandOptions{Version: "1.2.3"})
	if err := bus.NewClient(cli, host).Call(context.Background(), "save", nil, nil); err == nil {
		t.Fatal("save should fail")
	}
	var ping micro.Ping
	request(t, cli, "$SRV.PING", &ping)
	if ping.Name != "vmledger" || ping.Version != "1.2.3" || ping.Type != micro.PingResponseType {
		t.Fatalf("PING: %+v", ping)
	}
	var info micro.Info
	request(t, cli, "$SRV.INFO.vmledger", &info)
	subjects := map[string]bool{}
	for _, e := range info.Endpoints {
		subjects[e.Subject] = true
	}
	for _, v := range verbs {
		if !subjects["vmledger.cmd."+host+"."+v] {
			t.Errorf("INFO lacks verb %s: %+v", v, info.Endpoints)
		}
	}
	if info.Metadata["host"] != host {
		t.Errorf("INFO metadata %v, want host", info.Metadata)
	}
	var stats micro.Stats
	request(t, cli, "$SRV.STATS.vmledger", &stats)
	for _, e := range stats.Endpoints {
		if e.Name != "save" {
			continue
		}
		var d map[string]int64
		if err := json.Unmarshal(e.Data, &d); err != nil || d["errors"] != 1 {
			t.Fatalf("STATS save data %s (%v), want errors=1", e.Data, err)
		}
		return
	}
	t.Fatalf("STATS lacks save: %+v", stats.Endpoints)
}

func request(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	m, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

func TestStartCommandsValidates(t *testing.T) {
	_, nc := embedded(t)
	tests := []bus.CommandOptions{
		{Host: "h.x", Verbs: []string{"a"}},
		{Host: "h", Verbs: []string{"a.b"}},
		{Host: "h", Verbs: []string{"a", "a"}},
		{Host: "h", Verbs: []string{"a"}, Version: "not-semver"},
	}
	for _, o := range tests {
		if _, err := bus.StartCommands(context.Background(), nc, bus.HandlerFunc(nil), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
