package api

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// asOf answers info and config with At: it reads the domain's events from
// the log (not the live projection) and folds them up to the point.
//
// A UUID reaches any domain the log has seen, undefined ones included; a
// name is resolved through the live projection, so it names the domain
// that has it now (a name may have belonged to another domain before).
func (h Handler) asOf(ctx context.Context, ref, at string) (domains.Domain, error) {
	seq, until, err := domains.ParsePoint(at)
	if err != nil {
		return domains.Domain{}, err
	}
	if h.Log == nil {
		return domains.Domain{}, domains.Errorf(domains.CodeUnavailable, "this agent has no log reader for \"at\" requests")
	}
	id, err := uuid.Parse(ref)
	if err != nil {
		d, gerr := h.Svc.Get(ref)
		if gerr != nil {
			return domains.Domain{}, domains.Errorf(domains.CodeNotFound,
				"domain %s is not defined now; name a past domain by its UUID: %w", domains.Quote(ref), gerr)
		}
		id = d.Config.UUID
	}
	evs, err := h.readUpTo(ctx, id, seq, until)
	if err != nil {
		return domains.Domain{}, err
	}
	if len(evs) == 0 {
		return domains.Domain{}, domains.Errorf(domains.CodeNotFound, "domain %s: no events in the log", domains.Quote(ref))
	}
	d, ok, err := domains.AsOf(evs, seq, until)
	if err != nil {
		return domains.Domain{}, domains.Errorf(domains.CodeInternal, "domain %s at %s: %w", ref, at, err)
	}
	if !ok {
		return domains.Domain{}, domains.Errorf(domains.CodeNotFound, "domain %s was not defined at %s", ref, at)
	}
	return d, nil
}

// readUpTo pages through the domain's events, stopping after the first
// page that reaches past the bound: a look at an old state of a long-lived
// domain does not read its whole history.
func (h Handler) readUpTo(ctx context.Context, id uuid.UUID, seq uint64, until time.Time) ([]domains.Event, error) {
	const page = 4096
	var out []domains.Event
	for after := uint64(0); ; after = out[len(out)-1].Version {
		evs, err := h.Log.ReadDomain(ctx, id, after, page)
		if err != nil {
			return nil, domains.Errorf(domains.CodeUnavailable, "read the log of %s: %w", id, err)
		}
		out = append(out, evs...)
		if len(evs) < page || domains.Past(evs[len(evs)-1], seq, until) {
			return out, nil
		}
	}
}
