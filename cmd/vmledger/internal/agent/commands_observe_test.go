package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

type fakeLookup map[string]domains.Domain

func (f fakeLookup) Get(ref string) (domains.Domain, error) {
	if d, ok := f[ref]; ok {
		return d, nil
	}
	return domains.Domain{}, domains.Errorf(domains.CodeNotFound, "no domain %s", ref)
}

// Each command is counted by verb and code and logged once, at the level
// its result calls for, also when the handler panics.
func TestObservedCommands(t *testing.T) {
	web := domains.Domain{Config: domains.Config{Name: "web1", UUID: uuid.MustParse("6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11")}}
	for _, tc := range []struct {
		name, verb, body string
		res              any
		err              error
		panics           bool
		wantCode, level  string
		wantDomain       string
	}{
		{"start ok", "start", `{"domain":"web1","command_id":"c1"}`, domains.Result{Name: "web1", Domain: web.Config.UUID}, nil, false, "ok", "info", "web1"},
		{"info read", "info", `{"domain":"6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11"}`, web, nil, false, "ok", "debug", "web1"},
		{"not found", "start", `{"domain":"nosuch"}`, nil, domains.Errorf(domains.CodeNotFound, "no domain"), false, "not-found", "warn", "nosuch"},
		{"define refused", "define", `{"config":{"name":"db1"}}`, nil, domains.Errorf(domains.CodeInvalid, "bad"), false, "invalid", "warn", "db1"},
		{"unavailable", "start", `{"domain":"web1"}`, nil, domains.Errorf(domains.CodeUnavailable, "no hypervisor"), false, "unavailable", "error", "web1"},
		{"panic", "reset", `{"domain":"web1"}`, nil, nil, true, "internal", "error", "web1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			m := newCommandMetrics()
			o := observed{
				next: bus.HandlerFunc(func(context.Context, string, []byte) (any, error) {
					if tc.panics {
						panic("boom")
					}
					return tc.res, tc.err
				}),
				lookup: fakeLookup{"web1": web, web.Config.UUID.String(): web}, metrics: m,
				log: zerolog.New(&logs).Level(zerolog.DebugLevel), reads: ReadVerbs(),
			}
			func() {
				defer func() {
					if p := recover(); (p != nil) != tc.panics {
						t.Errorf("panic %v, want re-panicked: %v", p, tc.panics)
					}
				}()
				_, _ = o.Handle(context.Background(), tc.verb, []byte(tc.body))
			}()
			if n := testutil.ToFloat64(m.total.WithLabelValues(tc.verb, tc.wantCode)); n != 1 {
				t.Errorf("vmledger_commands_total{%s,%s} = %v, want 1", tc.verb, tc.wantCode, n)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1: %q", len(lines), lines)
			}
			var l map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &l); err != nil {
				t.Fatal(err)
			}
			if l["level"] != tc.level || l["result"] != tc.wantCode || l["domain"] != tc.wantDomain || l["verb"] != tc.verb {
				t.Errorf("log line %s", lines[0])
			}
			if _, ok := l["duration_ms"].(float64); !ok {
				t.Errorf("no duration_ms: %s", lines[0])
			}
		})
	}
}
