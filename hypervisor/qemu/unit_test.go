package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

func TestGuestEventMapping(t *testing.T) {
	ts := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name, data string
		want       domains.GuestEvent
		skip       bool
		err        bool
	}{
		{name: qmp.EventStop, want: domains.GuestEvent{Kind: domains.GuestStop}},
		{name: qmp.EventResume, want: domains.GuestEvent{Kind: domains.GuestResume}},
		{name: qmp.EventShutdown, data: `{"guest": true, "reason": "guest-shutdown"}`,
			want: domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true, Reason: "guest-shutdown"}},
		{name: qmp.EventReset, data: `{"guest": false, "reason": "host-qmp-system-reset"}`,
			want: domains.GuestEvent{Kind: domains.GuestReset, Reason: "host-qmp-system-reset"}},
		{name: qmp.EventGuestPanicked, data: `{"action": "poweroff", "info": {"type": "hyper-v"}}`,
			want: domains.GuestEvent{Kind: domains.GuestPanicked, Reason: "poweroff", Info: `{"type": "hyper-v"}`}},
		{name: qmp.EventRTCChange, data: `{"offset": -3600, "qom-path": "/machine/unattached/device[10]"}`,
			want: domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: -3600}},
		{name: qmp.EventDeviceDeleted, data: `{"device": "rng0", "path": "/machine/peripheral/rng0"}`,
			want: domains.GuestEvent{Kind: domains.GuestDeviceDeleted, Device: "rng0", Info: "/machine/peripheral/rng0"}},
		{name: qmp.EventUnplugError, data: `{"device": "dimm1", "path": "/machine/peripheral/dimm1"}`,
			want: domains.GuestEvent{Kind: domains.GuestDeviceUnplugError, Device: "dimm1", Info: "/machine/peripheral/dimm1"}},
		{name: qmp.EventPowerdown, skip: true},
		{name: "NIC_RX_FILTER_CHANGED", data: `{"path": "x"}`, skip: true},
		{name: qmp.EventRTCChange, data: `{}`, skip: true, err: true}, // a missing offset is not 0
	}
	for _, tt := range tests {
		ev := qmp.Event{Name: tt.name, Timestamp: ts}
		if tt.data != "" {
			ev.Data = json.RawMessage(tt.data)
		}
		got, ok, err := guestEvent(ev)
		if (err != nil) != tt.err || ok == tt.skip {
			t.Errorf("%s %s: ok=%v err=%v; want skip=%v err=%v", tt.name, tt.data, ok, err, tt.skip, tt.err)
			continue
		}
		if !ok {
			continue
		}
		tt.want.Time = ts
		if got != tt.want {
			t.Errorf("%s: got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

// TestRunStepsUndo: a failure undoes the completed steps in reverse and
// names the failing step.
func TestRunStepsUndo(t *testing.T) {
	var trace []string
	mk := func(name string, fail bool) step {
		return step{
			name: name,
			do: func(context.Context) error {
				trace = append(trace, "do "+name)
				if fail {
					return errors.New("boom")
				}
				return nil
			},
			undo: func() { trace = append(trace, "undo "+name) },
		}
	}
	noUndo := mk("b", false)
	noUndo.undo = nil
	err := runSteps(context.Background(), zerolog.Nop(), []step{mk("a", false), noUndo, mk("c", false), mk("d", true), mk("e", false)})
	if err == nil || err.Error() != "d: boom" {
		t.Fatalf("err = %v, want d: boom", err)
	}
	want := "do a,do b,do c,do d,undo c,undo a"
	if got := strings.Join(trace, ","); got != want {
		t.Errorf("trace = %s, want %s", got, want)
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/qemu.log"
	if got := logTail(p, 100); got != "" {
		t.Errorf("missing file: %q", got)
	}
	content := logHeader + "2026 qemu -a -b\nwarning: one\n\nerror: two\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := logTail(p, 1000); got != "warning: one | error: two" {
		t.Errorf("logTail = %q", got)
	}
	if got := logTail(p, 4); got != "two" {
		t.Errorf("logTail(4) = %q", got)
	}
}
