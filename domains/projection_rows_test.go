package domains_test

import (
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Rows filters by state before it copies: each state's rows, sorted by
// name, are exactly the domains List shows in that state, and the active
// index (Active, Rows of an active state) follows every transition out of
// and back into shut off, undefine and a snapshot round trip.
func TestProjectionRows(t *testing.T) {
	utc := domains.Clock{Offset: domains.OffsetUTC}
	off, run, paused, crashed, gone := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	p := domains.NewProjection()
	mustApply(t, p,
		ev(1, off, 1, domains.Defined{Config: cfgNamed("e-off", off, utc)}),
		ev(2, run, 1, domains.Defined{Config: cfgNamed("d-run", run, utc)}),
		ev(3, paused, 1, domains.Defined{Config: cfgNamed("c-paused", paused, utc)}),
		ev(4, crashed, 1, domains.Defined{Config: cfgNamed("b-crashed", crashed, utc)}),
		ev(5, gone, 1, domains.Defined{Config: cfgNamed("a-gone", gone, utc)}),
		ev(6, run, 2, domains.Started{Reason: domains.StartBooted, PID: 7}),
		ev(7, paused, 2, domains.Started{Reason: domains.StartBooted, PID: 8}),
		ev(8, paused, 3, domains.Paused{Reason: domains.PauseUser}),
		ev(9, crashed, 2, domains.Started{Reason: domains.StartBooted, PID: 9}),
		ev(10, crashed, 3, domains.Crashed{Reason: "guest-panicked"}),
		// Started and stopped again: back among the shut off.
		ev(11, gone, 2, domains.Started{Reason: domains.StartBooted, PID: 10}),
		ev(12, gone, 3, domains.Stopped{Reason: domains.StopDestroyed}),
		ev(13, gone, 4, domains.Undefined{}),
	)
	row := func(id uuid.UUID, name string, st domains.State, v uint64) domains.Row {
		d, ok := p.Get(id)
		if !ok {
			t.Fatalf("%s not in the projection", name)
		}
		return domains.Row{UUID: id, Name: name, State: st, Reason: d.Reason, Version: v}
	}
	all := []domains.Row{
		row(crashed, "b-crashed", domains.StateCrashed, 3),
		row(paused, "c-paused", domains.StatePaused, 3),
		row(run, "d-run", domains.StateRunning, 2),
		row(off, "e-off", domains.StateShutoff, 1),
	}
	cases := []struct {
		state domains.State
		want  []domains.Row
	}{
		{"", all},
		{domains.StateRunning, all[2:3]},
		{domains.StatePaused, all[1:2]},
		{domains.StateCrashed, all[0:1]},
		{domains.StateShutoff, all[3:]},
		{domains.StateShutdown, []domains.Row{}},
	}
	check := func(t *testing.T, p *domains.Projection) {
		for _, c := range cases {
			if got := p.Rows(c.state); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Rows(%q):\n got %+v\nwant %+v", c.state, got, c.want)
			}
			// The reference: List, then filtered.
			var ref []domains.Row
			for _, d := range p.List() {
				if c.state == "" || d.State == c.state {
					ref = append(ref, domains.Row{UUID: d.Config.UUID, Name: d.Config.Name, State: d.State, Reason: d.Reason, Version: d.Version})
				}
			}
			if len(ref) != len(c.want) || (len(ref) > 0 && !reflect.DeepEqual(ref, c.want)) {
				t.Errorf("List filtered by %q: %+v", c.state, ref)
			}
		}
		var active []string
		for _, d := range p.Active() {
			active = append(active, d.Config.Name)
		}
		if want := []string{"b-crashed", "c-paused", "d-run"}; !reflect.DeepEqual(active, want) {
			t.Errorf("Active: %v, want %v", active, want)
		}
	}
	t.Run("live", func(t *testing.T) { check(t, p) })
	t.Run("from a snapshot", func(t *testing.T) {
		q, _ := snapshotRoundTrip(t, p)
		check(t, q)
	})
}
