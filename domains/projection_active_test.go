package domains_test

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Active lists exactly the active domains, as copies.
func TestProjectionActive(t *testing.T) {
	utc := domains.Clock{Offset: domains.OffsetUTC}
	off, run, paused := uuid.New(), uuid.New(), uuid.New()
	p := domains.NewProjection()
	mustApply(t, p,
		ev(1, off, 1, domains.Defined{Config: cfgNamed("c-off", off, utc)}),
		ev(2, run, 1, domains.Defined{Config: cfgNamed("b-run", run, utc)}),
		ev(3, paused, 1, domains.Defined{Config: cfgNamed("a-paused", paused, utc)}),
		ev(4, run, 2, domains.Started{Reason: "booted", PID: 7}),
		ev(5, paused, 2, domains.Started{Reason: "booted", PID: 8}),
		ev(6, paused, 3, domains.Paused{Reason: domains.PauseUser}),
	)
	got := p.Active()
	if len(got) != 2 || got[0].Config.Name != "a-paused" || got[1].Config.Name != "b-run" {
		t.Fatalf("Active: %+v", got)
	}
	got[0].Live.PID = 99
	if d, _ := p.Get(paused); d.Live.PID != 8 {
		t.Fatal("Active shares the projection's domains")
	}
	if ids := p.ActiveIDs(); len(ids) != 2 || !slices.Contains(ids, run) || !slices.Contains(ids, paused) {
		t.Fatalf("ActiveIDs: %v, want %v and %v", ids, run, paused)
	}
	mustApply(t, p, ev(7, run, 3, domains.Stopped{Reason: domains.StopDestroyed}))
	if got := p.Active(); len(got) != 1 || got[0].Config.UUID != paused {
		t.Fatalf("after destroy: %+v", got)
	}
	if ids := p.ActiveIDs(); len(ids) != 1 || ids[0] != paused {
		t.Fatalf("ActiveIDs after destroy: %v", ids)
	}
}
