package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// oldLog writes, with the store directly (no append guard, as an older
// agent did), a log of: small (seq 1), big (seq 2: 1.8 MB of JSON, more
// than NATS's 1 MiB max payload), after (seq 3).
func oldLog(t *testing.T, stateDir string) (big uuid.UUID) {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(stateDir, "events.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	big = uuid.New()
	cfg := func(name string) domains.Event {
		c := domains.Config{Name: name, UUID: uuid.New(), MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
		return domains.NewEvent(c.UUID, time.Now(), "", "testhost", domains.Defined{Config: c})
	}
	for _, e := range []domains.Event{cfg("small"), bustest.BigDefined(big, "testhost", "big", 300<<10), cfg("after")} {
		if _, err := st.Append(context.Background(), store.AppendRequest{Domain: e.Domain, Events: []domains.Event{e}}); err != nil {
			t.Fatal(err)
		}
	}
	return big
}

// Issue 7, defect 3: an agent on a log that already holds a 1.8 MB event
// serves it: `events`, `history`, `events --follow` (from history, then
// live) get past it, printing a truncated marker in its place; `info`
// answers at once with a clear error instead of timing out; and a new
// event that large is refused at define, appending nothing.
func TestCLIOversizeEventInOldLog(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	oldLog(t, state)
	a := startAgent(t, state, "--metrics-addr", "127.0.0.1:0")

	out := a.mustCLI("events")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "2\t") || !strings.Contains(lines[1], "<truncated: ") || len(lines[1]) > 4096 {
		t.Fatalf("events: %d lines:\n%.2000s", len(lines), out)
	}
	out = a.mustCLI("events", "--json")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	var ph struct {
		Seq       uint64         `json:"seq"`
		Truncated map[string]any `json:"truncated"`
	}
	if len(lines) != 3 || json.Unmarshal([]byte(lines[1]), &ph) != nil || ph.Seq != 2 || ph.Truncated["bytes"] == nil {
		t.Fatalf("events --json:\n%.2000s", out)
	}
	if out := a.mustCLI("history", "big"); !strings.Contains(out, "<truncated: ") {
		t.Fatalf("history big: %.2000s", out)
	}

	// info: the reply could not carry the config; the caller hears so at
	// once (a timeout would exit 5 after --timeout 10m; the runner kills
	// the CLI long before that).
	_, errs, code := a.cli("--timeout", "10m", "info", "big")
	if code != exitInternal || !strings.Contains(errs, "max payload") || len(errs) > 4096 {
		t.Fatalf("info big: exit %d: %.2000s", code, errs)
	}
	if out := a.mustCLI("info", "small"); !strings.Contains(out, "small") {
		t.Fatalf("info small: %s", out)
	}
	if out := a.mustCLI("events", "--type", "defined", "--domain", "big"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "<truncated: ") {
		t.Fatalf("events --type defined --domain big: %.2000s", out)
	}
	if out := a.mustCLI("list"); !strings.Contains(out, "big ") {
		t.Fatalf("list: %s", out)
	}
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^vmledger_relay_truncated_events_total [1-9]`).Match(body) {
		t.Errorf("no truncated events counted in /metrics")
	}

	// events --follow: history first (past seq 2), then live.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := a.cliLines(ctx, "events", "--follow")
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-got:
			if !ok {
				t.Fatal("events --follow ended")
			}
			return l
		case <-ctx.Done():
			t.Fatal("events --follow: no line")
		}
		return ""
	}
	for i := 1; i <= 3; i++ {
		if l := next(); !strings.HasPrefix(l, strconv.Itoa(i)+"\t") {
			t.Fatalf("follow line %d: %.300s", i, l)
		}
	}
	a.mustCLI("define", writeFile(t, dir, "live.json", `{"name":"live","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
	if l := next(); !strings.HasPrefix(l, "4\t") || !strings.Contains(l, "defined") {
		t.Fatalf("follow live line: %.300s", l)
	}
	// The domain itself is not stuck: it can be removed.
	a.mustCLI("undefine", "big")
	if l := next(); !strings.HasPrefix(l, "5\t") || !strings.Contains(l, "undefined") {
		t.Fatalf("follow live line: %.300s", l)
	}

	// A define whose event would be that large is refused, and nothing is
	// appended (whichever check refuses it: config bounds or the guard).
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	before := lastSeq(t, nc)
	r := rawRequest(t, nc, "vmledger.cmd.testhost.define",
		`{"config":{"name":"huge","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"},"disks":[{"target":"vda","path":"/`+strings.Repeat("<", 300<<10)+`"}]}}`)
	if r.Error == nil || r.Error.Code != "invalid" || len(r.Error.Message) > 4096 {
		t.Fatalf("huge define: %+v %.500v", r, r.Error)
	}
	if got := lastSeq(t, nc); got != before {
		t.Fatalf("last seq %d after a refused define, want %d", got, before)
	}
}

// Issue 7, defect 4: an info request naming a 600 KB domain gets a reply
// (before: none, the reply exceeded the max payload), a not-found error
// that quotes a bounded part of the name.
func TestCLIErrorRepliesBounded(t *testing.T) {
	a := startAgent(t, t.TempDir())
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	name := strings.Repeat("<", 600<<10)
	for _, verb := range []string{"info", "start", "undefine", "config"} {
		r := rawRequest(t, nc, "vmledger.cmd.testhost."+verb, `{"domain":"`+name+`"}`)
		// Quoted through domains.Quote: 128 bytes of the name, then its
		// length (the bus's own 2 KiB cap is only the backstop).
		if r.Error == nil || r.Error.Code != "not-found" || len(r.Error.Message) > 512 || !strings.Contains(r.Error.Message, "<<<<\"... (614400 bytes)") {
			t.Fatalf("%s: %+v", verb, r.Error)
		}
	}
}
