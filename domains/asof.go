package domains

import (
	"fmt"
	"strconv"
	"time"
)

// AsOf folds one domain's events, oldest first from version 1, up to a
// bound and returns the domain as it stood then; ok is false when the
// domain did not exist at that point (not yet defined, or undefined).
//
// The bound is seq (events with Seq <= seq) and until (events recorded at
// or before until); a zero seq or a zero until is no bound. Times are
// compared in log order: the fold stops at the first event past until,
// so a host clock that stepped back cannot make a later fact count as
// earlier. A fresh projection is enough: sequences increase and versions
// are contiguous within one domain's events, which is all Apply checks.
func AsOf(events []Event, seq uint64, until time.Time) (Domain, bool, error) {
	if len(events) == 0 {
		return Domain{}, false, nil
	}
	id := events[0].Domain
	p := NewProjection()
	for i := range events {
		e := &events[i]
		if e.Domain != id {
			return Domain{}, false, fmt.Errorf("as of: event seq %d is of domain %s, not %s: %w", e.Seq, e.Domain, id, ErrCorrupt)
		}
		if Past(*e, seq, until) {
			break
		}
		if err := p.Apply(*e); err != nil {
			return Domain{}, false, fmt.Errorf("as of: %w", err)
		}
	}
	d, ok := p.Get(id)
	return d, ok, nil
}

// Past reports whether e lies beyond the bound (seq, until) of AsOf.
func Past(e Event, seq uint64, until time.Time) bool {
	return (seq != 0 && e.Seq > seq) || (!until.IsZero() && e.Time.After(until))
}

// ParsePoint parses a point in the log: a decimal sequence (from 1) or an
// RFC 3339 time. Exactly one of seq and t is set on success.
func ParsePoint(s string) (seq uint64, t time.Time, err error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return 0, t, Errorf(CodeInvalid, "point %q: sequences start at 1", s)
		}
		return n, t, nil
	}
	t, err = time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, t, Errorf(CodeInvalid, "point %q: want a sequence number or an RFC 3339 time (2026-01-02T15:04:05Z)", s)
	}
	return 0, t.UTC(), nil
}
