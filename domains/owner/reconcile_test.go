package owner_test

import (
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// Reconcile takes up the active guests nobody watches: one whose QEMU
// still runs is reattached, one whose QEMU is gone is recorded stopped
// (crashed); a watched guest is left alone, and a second Reconcile
// changes nothing.
func TestReconcile(t *testing.T) {
	e := newEnv(t)
	alive, gone := e.define("alive", clockUTC), e.define("gone", clockUTC)
	e.start(alive)
	e.start(gone)
	drv := domainstest.NewFakeDriver()
	e.restart(drv) // no Recover: both are active and unwatched
	drv.SetAttachable(alive.UUID, domainstest.NewFakeGuest(e.get("alive").Live.PID, "kvm"))
	before := e.log.LastSeq()
	if err := e.svc.Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}
	if d := e.get("alive"); d.State != domains.StateRunning {
		t.Fatalf("alive: %s", d.State)
	}
	if d := e.get("gone"); d.State != domains.StateShutoff || d.Reason != domains.StopCrashed {
		t.Fatalf("gone: %s (%s)", d.State, d.Reason)
	}
	if n := e.log.LastSeq(); n != before+1 {
		t.Fatalf("reconcile appended %d events, want 1 (gone's stopped)", n-before)
	}
	attaches := len(drv.Attaches())
	if err := e.svc.Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}
	if len(drv.Attaches()) != attaches || e.log.LastSeq() != before+1 {
		t.Fatalf("a second reconcile attached %d more times, appended %d more events", len(drv.Attaches())-attaches, e.log.LastSeq()-before-1)
	}
}
