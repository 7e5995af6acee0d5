package owner_test

import (
	"errors"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// autostart records its setting once (a repeat records nothing), survives
// an agent restart in the log, and the next agent starts exactly the
// shut-off domains marked so; with no hypervisor it reports them instead.
func TestAutostartSetting(t *testing.T) {
	e := newEnv(t)
	web := e.define("web", clockUTC)
	e.define("db", clockUTC)
	res, err := e.svc.SetAutostart(e.ctx, "c1", "web", true)
	if err != nil || len(res.Seqs) != 1 {
		t.Fatalf("autostart: %+v, %v", res, err)
	}
	if ev := e.lastEvent(); ev.Type != domains.TypeAutostartSet || ev.Payload != (domains.AutostartSet{Enabled: true}) || ev.CommandID != "c1" {
		t.Fatalf("recorded %s %+v (command %q)", ev.Type, ev.Payload, ev.CommandID)
	}
	before := e.log.LastSeq()
	if res, err := e.svc.SetAutostart(e.ctx, "c2", "web", true); err != nil || len(res.Seqs) != 0 || e.log.LastSeq() != before {
		t.Fatalf("a repeated setting: %+v, %v; log %d -> %d", res, err, before, e.log.LastSeq())
	}
	if !e.get("web").Autostart || e.get("db").Autostart {
		t.Fatal("projection: web should autostart, db not")
	}

	e.restart(nil)
	if started, err := e.svc.Autostart(e.ctx); len(started) != 0 || err == nil {
		t.Fatalf("without a hypervisor: started %v, err %v; want web reported", started, err)
	}
	e.restart(e.drv)
	started, err := e.svc.Autostart(e.ctx)
	if err != nil || len(started) != 1 || started[0] != "web" {
		t.Fatalf("autostart: started %v, %v", started, err)
	}
	if e.get("web").State != domains.StateRunning || e.get("db").State != domains.StateShutoff {
		t.Fatalf("states: web %s, db %s", e.get("web").State, e.get("db").State)
	}
	// Running already: nothing to do.
	if started, err := e.svc.Autostart(e.ctx); err != nil || len(started) != 0 {
		t.Fatalf("second autostart: %v, %v", started, err)
	}
	if _, err := e.svc.SetAutostart(e.ctx, "", web.UUID.String(), false); err != nil || e.get("web").Autostart {
		t.Fatalf("disable: %v", err)
	}
	if _, err := e.svc.SetAutostart(e.ctx, "", "nope", true); !errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("unknown domain: %v", err)
	}
}

// A refused or malformed raw monitor command is refused before anything
// happens: no event, and the domain is not tainted.
func TestMonitorCommandRefusedChangesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("web", clockUTC)
	e.start(cfg)
	before := e.log.LastSeq()
	for _, raw := range []string{
		`{"execute":"quit"}`,
		`{"execute":"device_add","arguments":{"driver":"e1000"}}`,
		`{"execute":"human-monitor-command","arguments":{"command-line":"quit"}}`,
		`{"execute":"query-status","id":"x"}`,
		`{"execute":"query-status","arguments":[1]}`,
		`{"execute":""}`,
		`[1,2]`,
		`not json`,
	} {
		if _, err := e.svc.MonitorCommand(e.ctx, "", "web", []byte(raw)); !errors.Is(err, domains.ErrInvalid) {
			t.Errorf("%s: %v, want invalid", raw, err)
		}
	}
	if e.log.LastSeq() != before || len(e.get("web").Live.Taints) != 0 {
		t.Fatalf("refusals changed the log (%d -> %d) or tainted the domain", before, e.log.LastSeq())
	}
	// The fake QEMU takes no raw commands: unavailable, nothing recorded.
	if _, err := e.svc.MonitorCommand(e.ctx, "", "web", []byte(`{"execute":"query-status"}`)); !errors.Is(err, domains.ErrUnavailable) || e.log.LastSeq() != before {
		t.Fatalf("no capability: %v", err)
	}
}
