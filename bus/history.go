package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// History page bounds. Count bounds the work per request; bytes keep every
// reply well under the server's max payload (see HistoryOptions.MaxBytes).
const (
	DefaultHistoryLimit = 1000
	MaxHistoryLimit     = 10000
	// maxScan bounds how many events one filtered request may read past
	// before it answers with what it has (more=true): a filter that matches
	// nothing must not read the whole log in one go.
	maxScan = 100_000
)

// HistoryRequest asks for events with Seq > After, optionally only one
// domain's and only some types.
type HistoryRequest struct {
	After  uint64         `json:"after"`
	Limit  int            `json:"limit,omitempty"`
	Domain uuid.UUID      `json:"domain,omitzero"`
	Types  []domains.Type `json:"types,omitempty"`
}

// HistoryPage is one reply. Next is the After of the following request (the
// last sequence examined, which with a filter may be past the last event
// returned); More says whether the log had events beyond Next when the
// page was cut; LastSeq is the log's last committed sequence at that time.
type HistoryPage struct {
	Events  []domains.Event `json:"events"`
	LastSeq uint64          `json:"last_seq"`
	Next    uint64          `json:"next"`
	More    bool            `json:"more"`
}

// historyWire is what the service decodes: the domain as a string, so a
// hand-written client sending "" means "any" instead of a parse error.
type historyWire struct {
	After  uint64         `json:"after"`
	Limit  int            `json:"limit"`
	Domain string         `json:"domain"`
	Types  []domains.Type `json:"types"`
}

// HistoryOptions configures the history service.
type HistoryOptions struct {
	Host string
	// MaxBytes caps a reply's size; default half the connection's max
	// payload, never more than max payload minus 4 KiB of headroom.
	MaxBytes int
	// Timeout bounds the store reads of one request; default 10s.
	Timeout time.Duration
	// Version is the semver $SRV.INFO reports for the API service;
	// default "0.0.0".
	Version string
	// Consoles, if set, answers the console endpoint (api.go): where a
	// domain's console streams are.
	Consoles ConsoleLookup
	Logger   zerolog.Logger
}

// HistoryService answers history requests from the log. It is the
// "vmledger-api" micro service (api.go), so $SRV.INFO lists its
// endpoints with their subjects and schema, and $SRV.STATS counts their
// requests and errors.
type HistoryService struct {
	svc micro.Service
}

// StartHistory starts the API service. Requests are answered one at a
// time per endpoint, in micro's subscription goroutine: pages are bounded
// reads from bbolt, and serial service keeps a reconnect storm from
// multiplying load.
func StartHistory(ctx context.Context, nc *nats.Conn, st EventReader, o HistoryOptions) (*HistoryService, error) {
	if err := checkToken("host", o.Host); err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	log := o.Logger.With().Str("component", "history").Logger()
	history := func(r micro.Request) {
		rctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		body, err := servePage(rctx, st, r.Data(), pageBytes(o.MaxBytes, nc.MaxPayload()))
		if err != nil {
			log.Debug().Err(err).Str("code", string(domains.CodeOf(err))).Msg("history request failed")
		}
		respondAPI(r, log, body, err)
	}
	svc, err := startAPI(ctx, nc, o, history)
	if err != nil {
		return nil, err
	}
	return &HistoryService{svc: svc}, nil
}

// Stop stops the endpoints; requests already received are answered
// before the connection's drain completes.
func (h *HistoryService) Stop(context.Context) error {
	if err := h.svc.Stop(); err != nil {
		return fmt.Errorf("api service: stop: %w", err)
	}
	return nil
}

// flushSubs waits for the server to confirm the subscriptions made so far,
// so a service is reachable from other connections once its Start returns.
func flushSubs(ctx context.Context, nc *nats.Conn) error {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("subscriptions not confirmed by the server: %w", err)
	}
	return nil
}

// drainSub drains sub and waits, under ctx, until it is closed.
func drainSub(ctx context.Context, sub *nats.Subscription) error {
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
			return nil
		}
		return fmt.Errorf("drain %s: %w", sub.Subject, err)
	}
	for sub.IsValid() {
		select {
		case <-closed:
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %w", sub.Subject, ctx.Err())
		}
	}
	return nil
}

// pageLimits are a reply's byte bounds: pages are cut at soft, but one
// event that alone exceeds soft is still sent alone; an event too large
// for any reply is sent as its placeholder (wireEvent), which the relay
// publishes for it too. So a large event never wedges a subscriber.
type pageLimits struct {
	soft       int
	maxPayload int64
}

func pageBytes(configured int, maxPayload int64) pageLimits {
	if configured <= 0 {
		configured = int(maxPayload) / 2
	}
	return pageLimits{soft: max(min(configured, carriable(maxPayload)), 1<<10), maxPayload: maxPayload}
}

// servePage decodes a request and renders the page as JSON. It writes the
// events' JSON straight into the reply, measuring as it goes, so the byte
// bound is exact and no event is encoded twice.
func servePage(ctx context.Context, st EventReader, data []byte, lim pageLimits) ([]byte, error) {
	var w historyWire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, domains.Errorf(domains.CodeInvalid, "history request: %v", err)
	}
	var dom uuid.UUID
	if w.Domain != "" {
		var err error
		if dom, err = uuid.Parse(w.Domain); err != nil {
			return nil, domains.Errorf(domains.CodeInvalid, "history request: domain %s: %v", domains.Quote(w.Domain), err)
		}
	}
	for _, t := range w.Types {
		if !t.Valid() {
			return nil, domains.Errorf(domains.CodeInvalid, "history request: unknown event type %s", domains.Quote(string(t)))
		}
	}
	switch {
	case w.Limit < 0:
		return nil, domains.Errorf(domains.CodeInvalid, "history request: limit %d: must not be negative", w.Limit)
	case w.Limit == 0:
		w.Limit = DefaultHistoryLimit
	case w.Limit > MaxHistoryLimit:
		w.Limit = MaxHistoryLimit
	}
	match := func(e *domains.Event) bool {
		return (dom == uuid.Nil || e.Domain == dom) && (len(w.Types) == 0 || slices.Contains(w.Types, e.Type))
	}
	filtered := dom != uuid.Nil || len(w.Types) > 0

	const tail = len(`],"last_seq":18446744073709551615,"next":18446744073709551615,"more":false}`)
	buf := bytes.NewBufferString(`{"events":[`)
	cursor, n, scanned := w.After, 0, 0
	full := false
	for !full && n < w.Limit && scanned < maxScan {
		chunk := w.Limit - n
		if filtered {
			chunk = 1024
		}
		evs, err := readCommitted(ctx, st, cursor, chunk)
		if err != nil {
			return nil, domains.Errorf(domains.CodeInternal, "history: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		for i := range evs {
			e := &evs[i]
			if match(e) {
				b, _, _ := wireEvent(e, lim.maxPayload)
				if size := buf.Len() + 1 + len(b) + tail; size > lim.soft {
					if n > 0 {
						full = true
						break
					}
					full = true // alone on its page: at most carriable + tail
				}
				if n > 0 {
					buf.WriteByte(',')
				}
				buf.Write(b)
				n++
			}
			cursor = e.Seq
			scanned++
			if n == w.Limit || full {
				break
			}
		}
	}
	last := st.LastSeq()
	buf.WriteString(`],"last_seq":`)
	buf.WriteString(strconv.FormatUint(last, 10))
	buf.WriteString(`,"next":`)
	buf.WriteString(strconv.FormatUint(cursor, 10))
	buf.WriteString(`,"more":`)
	buf.WriteString(strconv.FormatBool(cursor < last))
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
