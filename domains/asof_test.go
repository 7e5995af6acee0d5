package domains_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// asofHistory is one domain's life, interleaved (by sequence) with other
// domains' events that AsOf never sees: seqs jump, versions do not.
func asofHistory(t *testing.T) []domains.Event {
	t.Helper()
	id := uuid.MustParse("3c0f1b9e-2d7a-4e56-8b1c-9d0e1f2a3b4c")
	cfg := domains.Config{Name: "asof1", UUID: id, MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100, Basis: domains.BasisUTC}}
	big := cfg.Clone()
	big.MemoryMiB = 256
	payloads := []domains.Payload{
		domains.Defined{Config: cfg},
		domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 42, ClockBase: 100},
		domains.RTCChanged{Offset: 20, Adjustment: 120},
		domains.Paused{Reason: domains.PauseUser},
		domains.Resumed{Reason: "user"},
		domains.ConfigUpdated{Config: func() domains.Config { c := big.Clone(); c.Clock.Adjustment = 120; return c }()},
		domains.DeviceAttached{Device: domains.Device{ID: "rng0", Driver: "virtio-rng-pci"}, Live: true},
		domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"},
		domains.Stopped{Reason: domains.StopShutdown},
		domains.Undefined{},
		domains.Defined{Config: cfg},
	}
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	evs := make([]domains.Event, len(payloads))
	for i, p := range payloads {
		e := domains.NewEvent(id, t0.Add(time.Duration(i)*time.Second), "", "node1", p)
		e.Seq, e.Version = uint64(3*i+2), uint64(i+1)
		evs[i] = e
	}
	return evs
}

func asofJSON(t *testing.T, d domains.Domain) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAsOfEveryStep(t *testing.T) {
	evs := asofHistory(t)
	live := domains.NewProjection()
	for i, e := range evs {
		if err := live.Apply(e); err != nil {
			t.Fatal(err)
		}
		want, wantOK := live.Get(e.Domain)
		bounds := map[string]struct {
			seq   uint64
			until time.Time
		}{
			"seq":            {e.Seq, time.Time{}},
			"seq, between":   {e.Seq + 1, time.Time{}},
			"time":           {0, e.Time},
			"time, between":  {0, e.Time.Add(999 * time.Millisecond)},
			"seq and time":   {e.Seq, e.Time.Add(time.Hour)},
			"time and seq":   {e.Seq + 100, e.Time},
			"time, in +0100": {0, e.Time.In(time.FixedZone("x", 3600))},
		}
		for name, b := range bounds {
			got, ok, err := domains.AsOf(evs, b.seq, b.until)
			if err != nil {
				t.Fatalf("step %d (%s) %s: %v", i, e.Type, name, err)
			}
			if ok != wantOK || (ok && asofJSON(t, got) != asofJSON(t, want)) {
				t.Fatalf("step %d (%s) %s: got %v %s\nwant %v %s", i, e.Type, name, ok, asofJSON(t, got), wantOK, asofJSON(t, want))
			}
		}
	}
	// Before the first event the domain did not exist; undefined, neither.
	for name, b := range map[string]struct {
		seq   uint64
		until time.Time
		ok    bool
	}{
		"before, seq":       {1, time.Time{}, false},
		"before, time":      {0, evs[0].Time.Add(-time.Nanosecond), false},
		"undefined":         {evs[9].Seq, time.Time{}, false},
		"redefined":         {0, time.Time{}, true},
		"after the end":     {1 << 40, time.Time{}, true},
		"far future (time)": {0, evs[0].Time.Add(24 * time.Hour), true},
	} {
		d, ok, err := domains.AsOf(evs, b.seq, b.until)
		if err != nil || ok != b.ok {
			t.Fatalf("%s: ok %v err %v, want ok %v", name, ok, err, b.ok)
		}
		if name == "redefined" && (d.Version != 11 || d.Config.MemoryMiB != 64 || d.State != domains.StateShutoff) {
			t.Fatalf("redefined: %+v", d)
		}
	}
	if _, ok, err := domains.AsOf(nil, 5, time.Time{}); ok || err != nil {
		t.Fatalf("no events: %v %v", ok, err)
	}
}

// A clock that stepped back: the fold stops at the first event recorded
// after the bound, it does not skip it and fold later ones.
func TestAsOfCutsInLogOrder(t *testing.T) {
	evs := asofHistory(t)[:4] // defined, started, rtc-changed, paused
	evs[2].Time = evs[3].Time.Add(time.Hour)
	d, ok, err := domains.AsOf(evs, 0, evs[3].Time)
	if err != nil || !ok || d.Version != 2 || d.State != domains.StateRunning {
		t.Fatalf("got %+v %v %v, want version 2, running", d, ok, err)
	}
}

func TestAsOfRefuses(t *testing.T) {
	evs := asofHistory(t)[:3]
	other := evs[1]
	other.Domain = uuid.New()
	gap := evs[2]
	gap.Version = 9
	for name, in := range map[string][]domains.Event{
		"another domain":     {evs[0], other, evs[2]},
		"version gap":        {evs[0], evs[1], gap},
		"not from the start": evs[1:],
	} {
		if _, _, err := domains.AsOf(in, 0, time.Time{}); !errors.Is(err, domains.ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func TestParsePoint(t *testing.T) {
	tests := []struct {
		in      string
		seq     uint64
		t       time.Time
		invalid bool
	}{
		{in: "1", seq: 1},
		{in: "18446744073709551615", seq: 1<<64 - 1},
		{in: "2026-03-04T05:06:07Z", t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)},
		{in: "2026-03-04T05:06:07.123456789Z", t: time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)},
		{in: "2026-03-04T06:06:07+01:00", t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)},
		{in: "0", invalid: true},
		{in: "-1", invalid: true},
		{in: "18446744073709551616", invalid: true},
		{in: "yesterday", invalid: true},
		{in: "2026-03-04", invalid: true},
		{in: "2026-03-04 05:06:07", invalid: true},
		{in: "", invalid: true},
	}
	for _, tc := range tests {
		seq, at, err := domains.ParsePoint(tc.in)
		if tc.invalid {
			if !errors.Is(err, domains.ErrInvalid) {
				t.Errorf("%q: got %v, want an invalid error", tc.in, err)
			}
			continue
		}
		if err != nil || seq != tc.seq || !at.Equal(tc.t) || (!at.IsZero() && at.Location() != time.UTC) {
			t.Errorf("%q: got %d %v %v, want %d %v", tc.in, seq, at, err, tc.seq, tc.t)
		}
	}
}
