package bus

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/domains"
)

// followBuffer is how many live messages may wait while fn runs or history
// is paged; beyond it the client library drops them, which Follow sees as
// a sequence gap and repairs from history.
const followBuffer = 1 << 16

// FollowOptions selects what Follow delivers: events with Seq > After, of
// one domain (uuid.Nil: all) and some types (empty: all).
type FollowOptions struct {
	After  uint64
	Domain uuid.UUID
	Types  []domains.Type
}

// Follow calls fn for every matching event after o.After, exactly once and
// in sequence order, first from history and then live, until ctx ends (it
// returns ctx's error), fn fails (it returns fn's error as is) or the
// agent cannot be reached for history (an unavailable error: call Follow
// again with After set to the last sequence fn saw).
//
// It subscribes to all of the host's events, not just the filtered ones,
// because only the complete sequence reveals a lost message: a gap, a
// reconnect of this connection, or a drop in the local buffer each
// trigger a history fetch, and anything at or below the last sequence
// examined is a duplicate and skipped.
func (c *Client) Follow(ctx context.Context, o FollowOptions, fn func(domains.Event) error) error {
	if err := checkToken("host", c.host); err != nil {
		return err
	}
	for _, t := range o.Types {
		if !t.Valid() {
			return domains.Errorf(domains.CodeInvalid, "follow: unknown event type %s", domains.Quote(string(t)))
		}
	}
	// Subscribe before the first history read: an event committed while
	// history is paged then waits in ch instead of falling between the two.
	ch := make(chan *nats.Msg, followBuffer)
	sub, err := c.nc.ChanSubscribe(EventFilter(c.host, uuid.Nil, ""), ch)
	if err != nil {
		return domains.Errorf(domains.CodeUnavailable, "follow: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	reconnected := c.nc.StatusChanged(nats.CONNECTED)
	defer c.nc.RemoveStatusListener(reconnected)
	// The flush's PONG proves the server has registered the subscription.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return c.transportError(ctx, "follow", err)
	}

	f := follower{c: c, o: o, fn: fn, last: o.After}
	if o.Domain != uuid.Nil {
		f.domain = o.Domain.String()
	}
	if err := f.catchUp(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			// Whatever was published while this connection was down never
			// reaches ch; the next event would reveal it, but only if one
			// comes. Fetch now.
			if err := f.catchUp(ctx); err != nil {
				return err
			}
		case m := <-ch:
			if err := f.live(ctx, m); err != nil {
				return err
			}
		}
	}
}

type follower struct {
	c      *Client
	o      FollowOptions
	domain string // o.Domain as a subject token, "" for any
	fn     func(domains.Event) error
	last   uint64 // highest sequence examined: delivered or filtered out
}

// catchUp pages history from last until the log's end.
func (f *follower) catchUp(ctx context.Context) error {
	for {
		page, err := f.c.History(ctx, HistoryRequest{
			After: f.last, Limit: MaxHistoryLimit, Domain: f.o.Domain, Types: f.o.Types,
		})
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if e.Seq <= f.last {
				continue
			}
			if err := f.fn(e); err != nil {
				return err
			}
			f.last = e.Seq
		}
		f.last = max(f.last, page.Next)
		if !page.More {
			return nil
		}
	}
}

// live handles one message from the subscription.
func (f *follower) live(ctx context.Context, m *nats.Msg) error {
	seq, err := parseSeq(m.Header.Get(HeaderSeq))
	var e *domains.Event
	if err != nil {
		// Not stamped by a relay (or by an older one): the body knows.
		ev, derr := DecodeEvent(m.Data)
		if derr != nil || ev.Seq == 0 {
			return nil // not an event; nothing on this subject may stall us
		}
		e, seq = &ev, ev.Seq
	}
	if seq <= f.last {
		return nil
	}
	if seq > f.last+1 {
		if err := f.catchUp(ctx); err != nil {
			return err
		}
		if seq <= f.last {
			return nil
		}
		return domains.Errorf(domains.CodeInternal,
			"follow: live event %d is beyond the end of history (%d): the agent's log and bus disagree", seq, f.last)
	}
	if f.matches(m.Subject) {
		if e == nil {
			// DecodeEvent accepts the placeholder of an event too large
			// for the bus (Vmledger-Truncated) as a Truncated payload.
			ev, err := DecodeEvent(m.Data)
			if err != nil {
				return domains.Errorf(domains.CodeInternal, "follow: event %d: %w", seq, err)
			}
			e = &ev
		}
		if err := f.fn(*e); err != nil {
			return err
		}
	}
	f.last = seq
	return nil
}

// matches filters on the subject's tokens (vmledger.evt.<host>.<domain>.
// <type>), so filtered-out events are never decoded.
func (f *follower) matches(subject string) bool {
	tok := strings.Split(subject, ".")
	if len(tok) != 5 {
		return false
	}
	if f.domain != "" && tok[3] != f.domain {
		return false
	}
	return len(f.o.Types) == 0 || slices.Contains(f.o.Types, domains.Type(tok[4]))
}
