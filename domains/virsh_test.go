package domains_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

func TestParseMonitorCommand(t *testing.T) {
	for _, c := range []struct {
		raw, execute, args, err string
	}{
		{raw: `{"execute":"query-status"}`, execute: "query-status"},
		{raw: `{"execute":"qom-get","arguments":{"path":"/machine","property":"rtc-time"}}`, execute: "qom-get", args: `{"path":"/machine","property":"rtc-time"}`},
		{raw: `{"execute":"quit"}`, err: "use destroy"},
		{raw: `{"execute":"device_del","arguments":{"id":"x"}}`, err: "detach-device"},
		{raw: `{"execute":"query-status","arguments":"x"}`, err: "must be an object"},
		{raw: `{"execute":"query-status","arguments":null}`, err: "must be an object"},
		{raw: `{"execute":"query-status","exec-oob":"x"}`, err: "exec-oob"},
		{raw: `{"Execute":"query-status"}`, err: "Execute"},
		{raw: `{}`, err: "must name"},
		{raw: `{"execute":"` + strings.Repeat("q", 65) + `"}`, err: "at most 64"},
		{raw: `{"execute":"x"}{}`, err: "want"},
		{raw: `{"execute":"x","arguments":{"a":"` + strings.Repeat("a", domains.MaxMonitorCommand) + `"}}`, err: "at most"},
	} {
		ex, args, err := domains.ParseMonitorCommand([]byte(c.raw))
		if c.err != "" {
			if !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.80s: %v, want invalid naming %q", c.raw, err, c.err)
			}
			continue
		}
		if err != nil || ex != c.execute || string(args) != c.args {
			t.Errorf("%s: %q %s %v", c.raw, ex, args, err)
		}
	}
}

// A monitor command taints the running QEMU only: the next start is clean.
func TestMonitorCommandTaintsTheRunningDomain(t *testing.T) {
	p := domains.NewProjection()
	cfg := domains.Config{Name: "web", UUID: uuidA, MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	seq := uint64(0)
	apply := func(pl domains.Payload) {
		t.Helper()
		seq++
		e := domains.NewEvent(uuidA, t0, "", "h", pl)
		e.Seq, e.Version = seq, seq
		if err := p.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	apply(domains.Defined{Config: cfg})
	apply(domains.Started{Reason: domains.StartBooted})
	apply(domains.MonitorCommand{Execute: "stop"})
	apply(domains.MonitorCommand{Execute: "cont"})
	if d, _ := p.Get(uuidA); d.Live == nil || strings.Join(d.Live.Taints, ",") != domains.TaintCustomMonitor {
		t.Fatalf("taints %+v", d.Live)
	}
	apply(domains.Stopped{Reason: domains.StopDestroyed})
	apply(domains.Started{Reason: domains.StartBooted})
	if d, _ := p.Get(uuidA); len(d.Live.Taints) != 0 {
		t.Fatalf("a new start is tainted: %+v", d.Live)
	}
	// A fake reboot: shutdown, reset, resumed brings it back to running.
	apply(domains.Shutdown{Reason: domains.ShutdownGuest})
	apply(domains.Reset{Reason: domains.ResetReboot})
	apply(domains.Resumed{Reason: domains.ResumedReboot})
	if d, _ := p.Get(uuidA); d.State != domains.StateRunning || d.Reason != domains.ResumedReboot {
		t.Fatalf("after a fake reboot: %s (%s)", d.State, d.Reason)
	}
}

func TestParseState(t *testing.T) {
	for _, s := range domains.States() {
		if got, err := domains.ParseState(string(s)); err != nil || got != s {
			t.Errorf("%q: %q %v", s, got, err)
		}
	}
	_, err := domains.ParseState("shutoff")
	if !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), `"shut off"`) {
		t.Fatalf("shutoff: %v", err)
	}
}
