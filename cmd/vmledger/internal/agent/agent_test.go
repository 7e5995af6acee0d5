package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/store"
)

// syncBuffer is a log sink the agent's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// stepLog returns, in order, the step names the agent logged with msg
// ("starting" or "undoing").
func (s *syncBuffer) stepLog(t *testing.T, msg string) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, line := range strings.Split(s.b.String(), "\n") {
		var rec struct {
			Step    string `json:"step"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == msg && rec.Step != "" {
			out = append(out, rec.Step)
		}
	}
	return out
}

func testConfig(t *testing.T, logs *syncBuffer) Config {
	return Config{StateDir: t.TempDir(), Host: "testhost", NATSListen: "127.0.0.1:0", Accel: "none",
		Log: zerolog.New(logs).Level(zerolog.DebugLevel)}
}

// withUndo is the agent's step list, the names of those that have an undo.
func withUndo() (all, undone []string) {
	for _, st := range (&agent{}).steps() {
		all = append(all, st.name)
		if st.undo != nil {
			undone = append(undone, st.name)
		}
	}
	return all, undone
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// logClosed fails unless the agent let go of its log (bbolt's file lock).
func logClosed(t *testing.T, stateDir string) {
	t.Helper()
	s, err := store.Open(filepath.Join(stateDir, DBFile), store.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("the event log is still held after the agent returned: %v", err)
	}
	_ = s.Close()
}

// A clean stop undoes every step in the reverse of start-up: the command
// service goes before the domain service it calls, the relay before NATS,
// the event log last.
func TestAgentStopOrder(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig(t, &logs)
	cfg.MetricsAddr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan Info, 1)
	cfg.Ready = func(i Info) { ready <- i }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent ended before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("agent not ready")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	all, undone := withUndo()
	if got := logs.stepLog(t, "starting"); !reflect.DeepEqual(got, all) {
		t.Fatalf("start-up steps %v, want %v", got, all)
	}
	got := logs.stepLog(t, "undoing")
	if !reflect.DeepEqual(got, reversed(undone)) {
		t.Fatalf("stop order %v, want %v", got, reversed(undone))
	}
	before := func(a, b string) bool {
		i, j := -1, -1
		for k, n := range got {
			switch n {
			case a:
				i = k
			case b:
				j = k
			}
		}
		return i >= 0 && j >= 0 && i < j
	}
	for _, p := range [][2]string{{"command service", "domain service"}, {"relay", "nats"}, {"domain service", "event log"}, {"metrics", "event log"}} {
		if !before(p[0], p[1]) {
			t.Errorf("%s must stop before %s: %v", p[0], p[1], got)
		}
	}
	if got[len(got)-1] != "event log" {
		t.Errorf("the event log must close last: %v", got)
	}
	logClosed(t, cfg.StateDir)
}

// A step that fails undoes exactly the steps before it, newest first, and
// the agent returns the failing step's error.
func TestAgentStartFailureUndoes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var logs syncBuffer
	cfg := testConfig(t, &logs)
	cfg.MetricsAddr = busy.Addr().String() // the last step fails
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("Run with a taken metrics address: %v", err)
	}
	_, undone := withUndo()
	want := reversed(undone[:len(undone)-1]) // all but metrics itself
	if got := logs.stepLog(t, "undoing"); !reflect.DeepEqual(got, want) {
		t.Fatalf("undone %v, want %v", got, want)
	}
	logClosed(t, cfg.StateDir)
}

// The metrics exist from the event log's step on; a scrape before the
// service (or the relay) starts reads zero instead of following a nil
// pointer. (The gauges used to call the service unconditionally.)
func TestMetricsBeforeService(t *testing.T) {
	a := &agent{cfg: Config{StateDir: t.TempDir(), Host: "h"}, log: zerolog.Nop()}
	if err := a.validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.stateDir(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.openStore(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.store.Close()
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "vmledger_domains" {
			found = true
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Fatalf("vmledger_domains before the service = %v", v)
			}
		}
	}
	if !found {
		t.Fatal("no vmledger_domains gauge")
	}
}
