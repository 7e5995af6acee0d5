package owner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// Found by the fault harness (issue 14, TestFaultHarness): a QEMU that
// exits while the log refuses appends (a full disk: the store is broken
// until it recovers, which takes seconds) must still be recorded as
// stopped once the log accepts appends again. The watcher gave up after
// five tries in 1.5 s, and the log said "running" over a dead QEMU until
// the next agent start. The same holds for a guest's RTC change.
func TestGuestFactsOutlastABrokenLog(t *testing.T) {
	cases := []struct {
		name string
		act  func(g *domainstest.FakeGuest)
		want domains.Type
	}{
		{"exit", func(g *domainstest.FakeGuest) {
			g.Terminate(domains.GuestExit{Signaled: true, Err: "killed"})
		}, domains.TypeStopped},
		{"rtc change", func(g *domainstest.FakeGuest) {
			g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 3600})
		}, domains.TypeRTCChanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("vm", domains.Clock{Offset: domains.OffsetVariable, Basis: domains.OffsetUTC})
			g := e.start(cfg)
			e.log.FailAppends(errors.New("store: a commit failed while writing; appends are refused until the log is reopened: no space left on device"))
			tc.act(g)
			time.Sleep(3 * time.Second) // longer than the old retries (1.5 s)
			e.log.FailAppends(nil)
			e.waitSeq(3)
			evs, _ := e.log.Events()
			if last := evs[len(evs)-1]; last.Type != tc.want {
				t.Fatalf("last event %s, want %s", last.Type, tc.want)
			}
		})
	}
}
