package domains_test

import (
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// A clone is equal to its projection and shares nothing with it: events
// folded into one do not show in the other (the agent serialises a clone
// for its snapshots, outside the service's lock).
func TestProjectionClone(t *testing.T) {
	p := baseHistory(t) // alpha running, beta shut off, gamma undefined
	mustApply(t, p, ev(6, uuidB, 2, domains.DeviceAttached{Device: domains.Device{ID: "p0", Driver: "pvpanic", Props: map[string]string{"ioport": "1285"}}}))
	q := p.Clone()
	if ok, diff := p.Equal(q); !ok {
		t.Fatalf("clone differs: %s", diff)
	}
	before, err := q.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, p,
		ev(7, uuidA, 3, domains.Stopped{Reason: domains.StopDestroyed}),
		ev(8, uuidB, 3, domains.DeviceDetached{ID: "p0"}),
		ev(9, uuidB, 4, domains.Undefined{}),
	)
	if after, _ := q.MarshalSnapshot(); string(after) != string(before) {
		t.Fatalf("folding into the projection changed its clone:\n%s\n%s", before, after)
	}
	if rows := q.Rows(domains.StateRunning); len(rows) != 1 || rows[0].UUID != uuidA {
		t.Fatalf("clone's running rows: %+v", rows)
	}
	if a := q.Active(); len(a) != 1 || a[0].Config.UUID != uuidA {
		t.Fatalf("clone's active domains: %+v", a)
	}
	if rows := p.Rows(""); len(rows) != 1 || rows[0].State != domains.StateShutoff {
		t.Fatalf("projection's rows after the folds: %+v", rows)
	}
}
