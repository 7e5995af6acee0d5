package domains_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// ev builds a committed event.
func ev(seq uint64, id uuid.UUID, version uint64, p domains.Payload) domains.Event {
	e := domains.NewEvent(id, t0.Add(time.Duration(seq)*time.Second), "", "host-a", p)
	e.Seq, e.Version = seq, version
	return e
}

func cfgNamed(name string, id uuid.UUID, k domains.Clock) domains.Config {
	return domains.Config{Name: name, UUID: id, MemoryMiB: 256, VCPUs: 1, Machine: "pc", Clock: k}
}

func mustApply(t *testing.T, p *domains.Projection, evs ...domains.Event) {
	t.Helper()
	for _, e := range evs {
		if err := p.Apply(e); err != nil {
			t.Fatalf("Apply(seq %d %s): %v", e.Seq, e.Type, err)
		}
	}
}

func snapshot(t *testing.T, p *domains.Projection) string {
	t.Helper()
	b, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProjectionScriptedHistory(t *testing.T) {
	varClock := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100, Basis: domains.BasisUTC}
	a := cfgNamed("alpha", uuidA, varClock)
	a2 := a.Clone()
	a2.MemoryMiB = 512
	dev := domains.Device{ID: "rng0", Driver: "virtio-rng-pci"}
	type want struct {
		state   domains.State
		reason  string
		live    *domains.Live // nil: must be nil
		version uint64
		adj     int64 // Config.Clock.Adjustment
		devices int
		memory  uint64
	}
	live := func(rtc int64) *domains.Live {
		return &domains.Live{Accel: "kvm", PID: 1234, ClockBase: 100, RTC: rtc, Started: t0.Add(2 * time.Second)}
	}
	steps := []struct {
		e    domains.Event
		want want
	}{
		{ev(1, uuidA, 1, domains.Defined{Config: a}), want{domains.StateShutoff, "", nil, 1, 100, 0, 256}},
		{ev(2, uuidA, 2, domains.Started{Reason: domains.StartBooted, Accel: "kvm", PID: 1234, ClockBase: 100}), want{domains.StateRunning, "booted", live(100), 2, 100, 0, 256}},
		{ev(3, uuidA, 3, domains.Paused{Reason: domains.PauseUser}), want{domains.StatePaused, "user", live(100), 3, 100, 0, 256}},
		{ev(4, uuidA, 4, domains.Resumed{Reason: "unpaused"}), want{domains.StateRunning, "unpaused", live(100), 4, 100, 0, 256}},
		{ev(5, uuidA, 5, domains.RTCChanged{Offset: 50, Adjustment: 150}), want{domains.StateRunning, "unpaused", live(150), 5, 150, 0, 256}},
		{ev(6, uuidA, 6, domains.Reset{Guest: true}), want{domains.StateRunning, "unpaused", live(150), 6, 150, 0, 256}},
		{ev(7, uuidA, 7, domains.DeviceAttached{Device: dev, Live: true}), want{domains.StateRunning, "unpaused", live(150), 7, 150, 1, 256}},
		{ev(8, uuidA, 8, domains.DeviceDetachRequested{ID: "rng0"}), want{domains.StateRunning, "unpaused", live(150), 8, 150, 1, 256}},
		{ev(9, uuidA, 9, domains.DeviceDetached{ID: "rng0"}), want{domains.StateRunning, "unpaused", live(150), 9, 150, 0, 256}},
		{ev(10, uuidA, 10, domains.Crashed{Reason: "guest-panicked", Action: "pause"}), want{domains.StateCrashed, "guest-panicked", live(150), 10, 150, 0, 256}},
		{ev(11, uuidA, 11, domains.Stopped{Reason: domains.StopCrashed}), want{domains.StateShutoff, "crashed", nil, 11, 150, 0, 256}},
		{ev(12, uuidA, 12, domains.ConfigUpdated{Config: a2}), want{domains.StateShutoff, "crashed", nil, 12, 100, 0, 512}},
	}
	p := domains.NewProjection()
	for _, s := range steps {
		mustApply(t, p, s.e)
		d, ok := p.Get(uuidA)
		if !ok {
			t.Fatalf("after seq %d: domain missing", s.e.Seq)
		}
		w := s.want
		if d.State != w.state || d.Reason != w.reason || d.Version != w.version || d.LastSeq != s.e.Seq ||
			d.Config.Clock.Adjustment != w.adj || len(d.Config.Devices) != w.devices || d.Config.MemoryMiB != w.memory {
			t.Fatalf("after seq %d (%s): %+v; want %+v", s.e.Seq, s.e.Type, d, w)
		}
		if !reflect.DeepEqual(d.Live, w.live) {
			t.Fatalf("after seq %d (%s): live %+v, want %+v", s.e.Seq, s.e.Type, d.Live, w.live)
		}
		if p.LastSeq() != s.e.Seq || p.Version(uuidA) != w.version || p.Len() != 1 {
			t.Fatalf("after seq %d: LastSeq %d Version %d Len %d", s.e.Seq, p.LastSeq(), p.Version(uuidA), p.Len())
		}
		if !d.Updated.Equal(s.e.Time) || !d.Defined.Equal(t0.Add(time.Second)) {
			t.Fatalf("after seq %d: defined %v updated %v", s.e.Seq, d.Defined, d.Updated)
		}
	}
	// Undefine: gone, but its version is remembered.
	mustApply(t, p, ev(13, uuidA, 13, domains.Undefined{}))
	if _, ok := p.Get(uuidA); ok || p.Len() != 0 || p.Version(uuidA) != 13 {
		t.Fatalf("after undefine: len %d version %d", p.Len(), p.Version(uuidA))
	}
	if _, ok := p.Lookup("alpha"); ok {
		t.Fatal("the name still resolves after undefine")
	}
	// The name is free for another domain; the UUID continues its versions.
	mustApply(t, p, ev(14, uuidB, 1, domains.Defined{Config: cfgNamed("alpha", uuidB, domains.Clock{Offset: domains.OffsetUTC})}))
	if err := p.Apply(ev(15, uuidA, 1, domains.Defined{Config: cfgNamed("alpha-2", uuidA, varClock)})); !errors.Is(err, domains.ErrCorrupt) {
		t.Fatalf("redefine restarting at version 1: %v", err)
	}
	mustApply(t, p, ev(15, uuidA, 14, domains.Defined{Config: cfgNamed("alpha-2", uuidA, varClock)}))
	d, _ := p.Get(uuidA)
	if d.Version != 14 || d.State != domains.StateShutoff || d.Reason != "" || d.Live != nil || !d.Defined.Equal(t0.Add(15*time.Second)) {
		t.Fatalf("redefined domain: %+v", d)
	}
	mustApply(t, p, ev(16, uuidA, 15, domains.Started{Reason: domains.StartBooted, ClockBase: 100}))
	if d, _ := p.Get(uuidA); d.Version != 15 || d.State != domains.StateRunning {
		t.Fatalf("redefined domain after start: %+v", d)
	}
	// Lookup by name and by UUID string; List sorted by name.
	if d, ok := p.Lookup("alpha"); !ok || d.Config.UUID != uuidB {
		t.Errorf("Lookup(alpha) = %v %v", d.Config.UUID, ok)
	}
	if d, ok := p.Lookup(uuidA.String()); !ok || d.Config.Name != "alpha-2" {
		t.Errorf("Lookup(uuid) = %v %v", d.Config.Name, ok)
	}
	if _, ok := p.Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}
	l := p.List()
	if len(l) != 2 || l[0].Config.Name != "alpha" || l[1].Config.Name != "alpha-2" {
		t.Errorf("List = %+v", l)
	}
}

func TestProjectionRTCChanged(t *testing.T) {
	cases := []struct {
		clock     domains.Clock
		wantClock domains.Clock
	}{
		{domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100, Basis: domains.BasisUTC},
			domains.Clock{Offset: domains.OffsetVariable, Adjustment: 7300, Basis: domains.BasisUTC}},
		// A localtime basis becomes utc: the new adjustment is absolute.
		{domains.Clock{Offset: domains.OffsetVariable, Adjustment: 100, Basis: domains.BasisLocaltime},
			domains.Clock{Offset: domains.OffsetVariable, Adjustment: 7300, Basis: domains.BasisUTC}},
		{domains.Clock{Offset: domains.OffsetUTC}, domains.Clock{Offset: domains.OffsetUTC}},
		{domains.Clock{Offset: domains.OffsetLocaltime}, domains.Clock{Offset: domains.OffsetLocaltime}},
	}
	for _, c := range cases {
		t.Run(c.clock.Offset+"/"+c.clock.Basis, func(t *testing.T) {
			p := domains.NewProjection()
			mustApply(t, p,
				ev(1, uuidA, 1, domains.Defined{Config: cfgNamed("a", uuidA, c.clock)}),
				ev(2, uuidA, 2, domains.Started{Reason: domains.StartBooted, ClockBase: 100}),
				ev(3, uuidA, 3, domains.RTCChanged{Offset: 7200, Adjustment: 7300}),
			)
			d, _ := p.Get(uuidA)
			if d.Config.Clock != c.wantClock {
				t.Errorf("clock %+v, want %+v", d.Config.Clock, c.wantClock)
			}
			if d.Live == nil || d.Live.RTC != 7300 || d.Live.ClockBase != 100 {
				t.Errorf("live %+v: want RTC 7300 on clock base 100", d.Live)
			}
			// The adjustment survives stop: it is configuration, not live state.
			mustApply(t, p, ev(4, uuidA, 4, domains.Stopped{Reason: domains.StopShutdown}))
			if d, _ := p.Get(uuidA); d.Config.Clock != c.wantClock || d.Live != nil {
				t.Errorf("after stop: clock %+v live %+v", d.Config.Clock, d.Live)
			}
		})
	}
}

// baseHistory: alpha (A) running, beta (B) shut off, C undefined at version 2.
func baseHistory(t *testing.T) *domains.Projection {
	p := domains.NewProjection()
	mustApply(t, p,
		ev(1, uuidA, 1, domains.Defined{Config: cfgNamed("alpha", uuidA, domains.Clock{Offset: domains.OffsetUTC})}),
		ev(2, uuidB, 1, domains.Defined{Config: cfgNamed("beta", uuidB, domains.Clock{Offset: domains.OffsetUTC})}),
		ev(3, uuidA, 2, domains.Started{Reason: domains.StartBooted, PID: 7}),
		ev(4, uuidC, 1, domains.Defined{Config: cfgNamed("gamma", uuidC, domains.Clock{Offset: domains.OffsetUTC})}),
		ev(5, uuidC, 2, domains.Undefined{}),
	)
	return p
}

func TestProjectionRefuses(t *testing.T) {
	renamed := cfgNamed("alpha-new", uuidA, domains.Clock{Offset: domains.OffsetUTC})
	otherUUID := cfgNamed("alpha", uuidC, domains.Clock{Offset: domains.OffsetUTC})
	d := uuid.MustParse("11111111-2222-4333-8444-555555555555")
	cases := map[string]domains.Event{
		"seq repeated":               ev(5, uuidA, 3, domains.Paused{Reason: "user"}),
		"seq backwards":              ev(2, uuidA, 3, domains.Paused{Reason: "user"}),
		"seq zero":                   ev(0, uuidA, 3, domains.Paused{Reason: "user"}),
		"version gap":                ev(6, uuidA, 4, domains.Paused{Reason: "user"}),
		"version repeated":           ev(6, uuidA, 2, domains.Paused{Reason: "user"}),
		"version zero":               ev(6, uuidA, 0, domains.Paused{Reason: "user"}),
		"double define":              ev(6, uuidA, 3, domains.Defined{Config: cfgNamed("alpha", uuidA, domains.Clock{Offset: domains.OffsetUTC})}),
		"define taken name":          ev(6, d, 1, domains.Defined{Config: cfgNamed("beta", d, domains.Clock{Offset: domains.OffsetUTC})}),
		"new domain at version 2":    ev(6, d, 2, domains.Defined{Config: cfgNamed("delta", d, domains.Clock{Offset: domains.OffsetUTC})}),
		"redefine restarts versions": ev(6, uuidC, 1, domains.Defined{Config: cfgNamed("gamma", uuidC, domains.Clock{Offset: domains.OffsetUTC})}),
		"redefine skips a version":   ev(6, uuidC, 4, domains.Defined{Config: cfgNamed("gamma", uuidC, domains.Clock{Offset: domains.OffsetUTC})}),
		"define other uuid in body":  ev(6, d, 1, domains.Defined{Config: cfgNamed("delta", uuidB, domains.Clock{Offset: domains.OffsetUTC})}),
		"event for unknown domain":   ev(6, d, 1, domains.Paused{Reason: "user"}),
		"event for undefined domain": ev(6, uuidC, 3, domains.Started{Reason: domains.StartBooted}),
		"started when running":       ev(6, uuidA, 3, domains.Started{Reason: domains.StartBooted}),
		"resumed when running":       ev(6, uuidA, 3, domains.Resumed{Reason: "user"}),
		"undefined when running":     ev(6, uuidA, 3, domains.Undefined{}),
		"stopped when shut off":      ev(6, uuidB, 2, domains.Stopped{Reason: domains.StopDestroyed}),
		"rtc when shut off":          ev(6, uuidB, 2, domains.RTCChanged{Offset: 1, Adjustment: 1}),
		"config-updated renames":     ev(6, uuidA, 3, domains.ConfigUpdated{Config: renamed}),
		"config-updated other uuid":  ev(6, uuidA, 3, domains.ConfigUpdated{Config: otherUUID}),
		"payload of another type": func() domains.Event {
			e := ev(6, uuidA, 3, domains.Started{PID: 99})
			e.Type = domains.TypeStopped
			return e
		}(),
		"defined with wrong payload": func() domains.Event { e := ev(6, d, 1, domains.Paused{}); e.Type = domains.TypeDefined; return e }(),
		"nil payload":                func() domains.Event { e := ev(6, uuidB, 2, domains.Undefined{}); e.Payload = nil; return e }(),
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			p := baseHistory(t)
			before := snapshot(t, p)
			err := p.Apply(e)
			if err == nil {
				t.Fatalf("Apply accepted %+v", e)
			}
			if !errors.Is(err, domains.ErrCorrupt) {
				t.Errorf("error %q does not wrap ErrCorrupt", err)
			}
			if after := snapshot(t, p); after != before {
				t.Fatalf("a refused event changed the projection:\n%s\n%s", before, after)
			}
			if p.LastSeq() != 5 {
				t.Fatalf("LastSeq = %d", p.LastSeq())
			}
			// The projection still takes the next good event.
			mustApply(t, p, ev(6, uuidA, 3, domains.Paused{Reason: domains.PauseUser}))
		})
	}
}

func TestProjectionGetReturnsCopies(t *testing.T) {
	p := domains.NewProjection()
	c := fullConfig()
	mustApply(t, p, ev(1, uuidA, 1, domains.Defined{Config: c}), ev(2, uuidA, 2, domains.Started{Reason: "booted", PID: 5}))
	// The caller's config is not shared either.
	c.Disks[0].Path = "/changed"
	c.Devices[0].Props["period"] = "1"
	before := snapshot(t, p)
	d, _ := p.Get(uuidA)
	d.Config.Disks[0].Path = "/mutated"
	d.Config.Devices[0].Props["x"] = "y"
	d.Live.PID = 99
	for _, l := range p.List() {
		l.Config.NICs[0].MAC = "00:00:00:00:00:00"
		l.Live.RTC = 1
	}
	if after := snapshot(t, p); after != before {
		t.Fatalf("mutating copies changed the projection:\n%s\n%s", before, after)
	}
	if d, _ := p.Get(uuidA); d.Config.Disks[0].Path != fullConfig().Disks[0].Path {
		t.Fatalf("projection shares the defining event's slices: %q", d.Config.Disks[0].Path)
	}
}

// snapshotRoundTrip returns p through its snapshot, and the snapshot.
func snapshotRoundTrip(t *testing.T, p *domains.Projection) (*domains.Projection, []byte) {
	t.Helper()
	b, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	q, err := domains.UnmarshalSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	return q, b
}

func TestSnapshotRoundTrip(t *testing.T) {
	p := baseHistory(t)
	mustApply(t, p,
		ev(6, uuidA, 3, domains.RTCChanged{Offset: 3, Adjustment: 3}),
		ev(7, uuidB, 2, domains.DeviceAttached{Device: domains.Device{ID: "p0", Driver: "pvpanic", Props: map[string]string{"ioport": "1285"}}}),
	)
	q, b := snapshotRoundTrip(t, p)
	if ok, diff := p.Equal(q); !ok {
		t.Fatalf("snapshot round trip: %s", diff)
	}
	if ok, diff := q.Equal(p); !ok {
		t.Fatalf("snapshot round trip (reversed): %s", diff)
	}
	if b2, _ := q.MarshalSnapshot(); string(b2) != string(b) {
		t.Fatalf("re-marshalled snapshot differs:\n%s\n%s", b, b2)
	}
	if q.LastSeq() != 7 || q.Len() != 2 || q.Version(uuidC) != 2 {
		t.Fatalf("restored: last %d len %d tombstone %d", q.LastSeq(), q.Len(), q.Version(uuidC))
	}
	if d, ok := q.Lookup("beta"); !ok || d.Config.UUID != uuidB {
		t.Fatal("restored projection does not resolve names")
	}
	// Both continue identically, tombstones included.
	more := []domains.Event{
		ev(8, uuidC, 3, domains.Defined{Config: cfgNamed("gamma", uuidC, domains.Clock{Offset: domains.OffsetUTC})}),
		ev(9, uuidA, 4, domains.Stopped{Reason: domains.StopDestroyed}),
		ev(10, uuidB, 3, domains.Undefined{}),
	}
	mustApply(t, p, more...)
	mustApply(t, q, more...)
	if ok, diff := p.Equal(q); !ok {
		t.Fatalf("after more events: %s", diff)
	}
	// A refused event is refused by both.
	if err := q.Apply(ev(11, uuidB, 4, domains.Started{})); err == nil {
		t.Fatal("restored projection accepted an event for an undefined domain")
	}
	// Empty projection round trip.
	e, _ := domains.NewProjection().MarshalSnapshot()
	if r, err := domains.UnmarshalSnapshot(e); err != nil || r.Len() != 0 || r.LastSeq() != 0 {
		t.Fatalf("empty snapshot: %v", err)
	}
	for _, bad := range []string{"", "{", `{"domains":[{"config":{"name":"a"}},{"config":{"name":"a"}}]}`} {
		if _, err := domains.UnmarshalSnapshot([]byte(bad)); err == nil {
			t.Errorf("UnmarshalSnapshot(%q) succeeded", bad)
		}
	}
}

func TestProjectionEqualFindsDifferences(t *testing.T) {
	mk := func(extra ...domains.Event) *domains.Projection {
		p := baseHistory(t)
		mustApply(t, p, extra...)
		return p
	}
	base := mk()
	cases := map[string]*domains.Projection{
		"last seq":     mk(ev(6, uuidA, 3, domains.Reset{})),
		"state":        mk(ev(6, uuidA, 3, domains.Paused{Reason: "user"})),
		"domain count": mk(ev(6, uuidB, 2, domains.Undefined{})),
		"tombstone":    mk(ev(6, uuidC, 3, domains.Defined{Config: cfgNamed("gamma", uuidC, domains.Clock{Offset: domains.OffsetUTC})})),
	}
	for name, q := range cases {
		if ok, _ := base.Equal(q); ok {
			t.Errorf("%s: Equal missed the difference", name)
		}
		if ok, _ := q.Equal(base); ok {
			t.Errorf("%s: Equal (reversed) missed the difference", name)
		}
	}
	// Same content, different last-event details.
	x := mk(ev(6, uuidA, 3, domains.Paused{Reason: "user"}))
	y := mk(ev(6, uuidA, 3, domains.Paused{Reason: "io-error"}))
	if ok, _ := x.Equal(y); ok {
		t.Error("Equal missed a different reason")
	}
	if ok, diff := mk().Equal(base); !ok {
		t.Errorf("identical projections differ: %s", diff)
	}
}
