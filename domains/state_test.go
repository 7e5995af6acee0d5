package domains_test

import (
	"testing"

	"github.com/vmledger/vmledger/domains"
)

var allStates = []domains.State{
	domains.StateShutoff, domains.StateRunning, domains.StatePaused, domains.StateShutdown, domains.StateCrashed,
}

func TestTransitionsAreAccepted(t *testing.T) {
	rows := domains.Transitions()
	if len(rows) == 0 {
		t.Fatal("no transitions")
	}
	seen := map[[2]string]bool{}
	for _, r := range rows {
		key := [2]string{string(r.From), string(r.On)}
		if seen[key] {
			t.Errorf("(%s, %s) appears twice", r.From, r.On)
		}
		seen[key] = true
		if !r.On.Valid() {
			t.Errorf("row %+v: unknown event type", r)
		}
		got, ok := domains.Next(r.From, r.On)
		if !ok || got != r.To {
			t.Errorf("Next(%q, %s) = %q, %v; the table says %q", r.From, r.On, got, ok, r.To)
		}
	}
}

func TestNextIllegal(t *testing.T) {
	cases := []struct {
		from domains.State
		on   domains.Type
	}{
		{domains.StateShutoff, domains.TypeResumed},
		{domains.StateShutoff, domains.TypePaused},
		{domains.StateShutoff, domains.TypeStopped},
		{domains.StateShutoff, domains.TypeShutdown},
		{domains.StateShutoff, domains.TypeReset},
		{domains.StateShutoff, domains.TypeCrashed},
		{domains.StateShutoff, domains.TypeRTCChanged},
		{domains.StateShutoff, domains.TypeSaveStarted},
		{domains.StateShutoff, domains.TypeDumpStarted},
		{domains.StateShutoff, domains.TypeDeviceDetachRequested},
		{domains.StateRunning, domains.TypeStarted},
		{domains.StateRunning, domains.TypeResumed},
		{domains.StateRunning, domains.TypeUndefined},
		{domains.StatePaused, domains.TypePaused},
		{domains.StatePaused, domains.TypeStarted},
		{domains.StatePaused, domains.TypeUndefined},
		{domains.StateShutdown, domains.TypeStarted},
		// (in shutdown, resumed) is a fake reboot's way back (virsh.go).
		{domains.StateShutdown, domains.TypeSaveStarted},
		{domains.StateCrashed, domains.TypeStarted},
		{domains.StateCrashed, domains.TypePaused},
		{domains.StateCrashed, domains.TypeResumed},
		{domains.StateCrashed, domains.TypeCrashed},
		{domains.StateCrashed, domains.TypeReset},
		{domains.StateCrashed, domains.TypeShutdown},
		{domains.StateCrashed, domains.TypeUndefined},
	}
	for _, c := range cases {
		got, ok := domains.Next(c.from, c.on)
		if ok {
			t.Errorf("Next(%q, %s) = %q, accepted", c.from, c.on, got)
		}
		if got != c.from {
			t.Errorf("refused Next(%q, %s) returned state %q, want it unchanged", c.from, c.on, got)
		}
	}
}

// TestNextMatchesTable: for every state and type, Next accepts exactly the
// table's rows for the types the table governs, and keeps the state for
// any other type.
func TestNextMatchesTable(t *testing.T) {
	rows := map[[2]string]domains.State{}
	governed := map[domains.Type]bool{}
	for _, r := range domains.Transitions() {
		rows[[2]string{string(r.From), string(r.On)}] = r.To
		governed[r.On] = true
	}
	for _, typ := range domains.Types() {
		for _, s := range allStates {
			got, ok := domains.Next(s, typ)
			to, legal := rows[[2]string{string(s), string(typ)}]
			switch {
			case governed[typ] && legal:
				if !ok || got != to {
					t.Errorf("Next(%q, %s) = %q, %v; want %q", s, typ, got, ok, to)
				}
			case governed[typ]:
				if ok {
					t.Errorf("Next(%q, %s) = %q, accepted; not in the table", s, typ, got)
				}
			default:
				if !ok || got != s {
					t.Errorf("ungoverned %s in %q: Next = %q, %v; want the state kept", typ, s, got, ok)
				}
			}
		}
	}
	// The lifecycle types must all be governed.
	for _, typ := range []domains.Type{domains.TypeStarted, domains.TypePaused, domains.TypeResumed, domains.TypeShutdown,
		domains.TypeStopped, domains.TypeCrashed, domains.TypeReset, domains.TypeRTCChanged, domains.TypeUndefined} {
		if !governed[typ] {
			t.Errorf("%s is not in the transition table", typ)
		}
	}
	// Every active state can be left by stopped, and only shut off by started.
	for _, s := range allStates {
		_, stop := domains.Next(s, domains.TypeStopped)
		_, start := domains.Next(s, domains.TypeStarted)
		if stop != s.Active() || start == s.Active() {
			t.Errorf("%q: stopped legal=%v, started legal=%v, active=%v", s, stop, start, s.Active())
		}
	}
}

func TestStateActive(t *testing.T) {
	want := map[domains.State]bool{
		domains.StateShutoff: false, "": false,
		domains.StateRunning: true, domains.StatePaused: true, domains.StateShutdown: true, domains.StateCrashed: true,
	}
	for s, w := range want {
		if s.Active() != w {
			t.Errorf("%q.Active() = %v", s, !w)
		}
	}
}
