package owner_test

import (
	"errors"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// An append the log refuses as invalid (the bus guard: an event too large
// to ever be carried) reaches the caller as invalid, not as "unavailable",
// which would invite a retry that can never succeed; a log that cannot
// write now stays unavailable. Nothing is appended either way.
func TestAppendRefusalKeepsItsCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want domains.Code
	}{
		{"invalid", domains.Errorf(domains.CodeInvalid, "event of 2 MB exceeds the bus's limit"), domains.CodeInvalid},
		{"broken", errors.New("disk full"), domains.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("web", clockUTC)
			cfg.MemoryMiB *= 2 // a real change: config-updated is appended
			before := len(e.eventsAfter(0))
			e.log.FailAppends(tc.err)
			_, err := e.svc.Define(e.ctx, "", cfg)
			e.log.FailAppends(nil)
			if got := domains.CodeOf(err); got != tc.want {
				t.Fatalf("code %q (%v), want %q", got, err, tc.want)
			}
			if n := len(e.eventsAfter(0)); n != before {
				t.Fatalf("%d events appended", n-before)
			}
		})
	}
}
