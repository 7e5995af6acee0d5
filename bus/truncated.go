package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// HeaderTruncated marks a placeholder: the event's full JSON form, of the
// size this header gives in bytes, did not fit one NATS message.
const HeaderTruncated = "Vmledger-Truncated"

// Headroom below the server's max payload. An event larger than
// max payload - truncateHeadroom is carried as a placeholder by the relay
// and by history alike (the same events in both, so Follow's catch-up and
// live stream agree). New events are refused at append already above
// max payload - appendHeadroom: the rest leaves room for the replies that
// embed a config (info, define) and for headers.
const (
	truncateHeadroom = 4 << 10
	appendHeadroom   = 8 << 10
)

// MaxEventBytes is the largest JSON form of an event that may be appended
// when the bus's max payload is maxPayload.
func MaxEventBytes(maxPayload int64) int { return max(int(maxPayload)-appendHeadroom, 1<<10) }

// carriable is the largest event JSON the relay and history send whole.
func carriable(maxPayload int64) int { return max(int(maxPayload)-truncateHeadroom, 1<<10) }

// Truncated stands in for the payload of an event the bus cannot carry:
// one an older log holds, larger than a NATS message (or, should it ever
// happen, one that cannot be encoded). Seq, domain, version, type, time,
// command ID and host of the event are real; only the payload is missing.
// The log still has it (`vmledger log export`, with the agent stopped).
type Truncated struct {
	Of domains.Type `json:"-"`
	// Bytes is the size of the event's full JSON form (0 if unencodable).
	Bytes int `json:"bytes"`
	// MaxPayload is the bus's max payload when it was cut.
	MaxPayload int64 `json:"max_payload"`
	// Reason says why, for people.
	Reason string `json:"reason"`
}

// EventType is the type of the event it stands for.
func (t Truncated) EventType() domains.Type { return t.Of }

// placeholder is the wire form of a truncated event: the event's envelope
// with "truncated" instead of "payload", bounded whatever the event held.
type placeholder struct {
	Seq       uint64       `json:"seq"`
	Domain    uuid.UUID    `json:"domain"`
	Version   uint64       `json:"version"`
	Type      domains.Type `json:"type"`
	Schema    uint16       `json:"schema"`
	Time      time.Time    `json:"time"`
	CommandID string       `json:"command_id,omitempty"`
	Host      string       `json:"host"`
	Truncated *Truncated   `json:"truncated"`
}

// placeholderOf renders e's placeholder.
func placeholderOf(e *domains.Event, size int, maxPayload int64, reason string) []byte {
	b, _ := json.Marshal(placeholder{ // plain fields: cannot fail
		Seq: e.Seq, Domain: e.Domain, Version: e.Version, Type: e.Type, Schema: e.Schema,
		Time: e.Time, CommandID: e.CommandID, Host: e.Host,
		Truncated: &Truncated{Bytes: size, MaxPayload: maxPayload, Reason: reason},
	})
	return b
}

// wireEvent renders e for the bus: its JSON form, or its placeholder when
// that is larger than carriable(maxPayload) or cannot be encoded. size is
// the full form's size, truncated whether a placeholder was made.
func wireEvent(e *domains.Event, maxPayload int64) (body []byte, size int, truncated bool) {
	// MarshalJSON directly: json.Marshal would compact (re-scan) what it
	// returns, a third of the encoding's cost on the history path.
	b, err := e.MarshalJSON()
	if err != nil {
		return placeholderOf(e, 0, maxPayload, "the event cannot be encoded as JSON: "+boundMessage(err.Error())), 0, true
	}
	if len(b) > carriable(maxPayload) {
		return placeholderOf(e, len(b), maxPayload, "the event is "+strconv.Itoa(len(b))+
			" bytes as JSON, more than one NATS message carries; the log has it whole"), len(b), true
	}
	return b, len(b), false
}

// DecodeEvent decodes an event as the relay and history send it: its JSON
// form, or a placeholder, which becomes an Event whose Payload is a
// Truncated.
func DecodeEvent(data []byte) (domains.Event, error) {
	// A JSON string cannot contain `"truncated":` unescaped, so this
	// cheap test is false for every ordinary event but those whose payload
	// has an object key of that name; the decode below is exact.
	if bytes.Contains(data, []byte(`"truncated":`)) {
		var p placeholder
		if err := json.Unmarshal(data, &p); err == nil && p.Truncated != nil {
			if !p.Type.Valid() {
				return domains.Event{}, domains.Errorf(domains.CodeInternal, "placeholder for seq %d: unknown event type %s", p.Seq, domains.Quote(string(p.Type)))
			}
			t := *p.Truncated
			t.Of = p.Type
			return domains.Event{Seq: p.Seq, Domain: p.Domain, Version: p.Version, Type: p.Type, Schema: p.Schema,
				Time: p.Time.UTC(), CommandID: p.CommandID, Host: p.Host, Payload: t}, nil
		}
	}
	var e domains.Event
	err := json.Unmarshal(data, &e)
	return e, err
}

// decodeEvents decodes a page's events with DecodeEvent.
func decodeEvents(raws []json.RawMessage) ([]domains.Event, error) {
	evs := make([]domains.Event, 0, len(raws))
	for _, raw := range raws {
		e, err := DecodeEvent(raw)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// UnmarshalJSON decodes a history reply's page, its events with
// DecodeEvent, so a placeholder becomes a Truncated payload instead of an
// error (the default decoding wants every event's payload).
func (p *HistoryPage) UnmarshalJSON(b []byte) error {
	var w struct {
		Events  []json.RawMessage `json:"events"`
		LastSeq uint64            `json:"last_seq"`
		Next    uint64            `json:"next"`
		More    bool              `json:"more"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	evs, err := decodeEvents(w.Events)
	if err != nil {
		return err
	}
	*p = HistoryPage{Events: evs, LastSeq: w.LastSeq, Next: w.Next, More: w.More}
	return nil
}

// EncodeEvent is the inverse of DecodeEvent: e's JSON form, or for a
// Truncated payload the placeholder it came from.
func EncodeEvent(e domains.Event) ([]byte, error) {
	if t, ok := e.Payload.(Truncated); ok {
		return placeholderOf(&e, t.Bytes, t.MaxPayload, t.Reason), nil
	}
	return json.Marshal(e)
}

// CheckEventSize returns the check the agent applies before appending:
// an invalid error for an event whose JSON form could exceed
// MaxEventBytes(maxPayload()), which no NATS message could carry whole.
// It measures the widest form the log could give the event (largest seq
// and version, the longest time, this host), so an event it passes fits
// whatever the log assigns. maxPayload is read at each call
// (nats.Conn.MaxPayload: a reconnect may reach a server with another
// limit).
func CheckEventSize(host string, maxPayload func() int64) func(domains.Event) error {
	widest := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	return func(e domains.Event) error {
		mp := maxPayload()
		limit := MaxEventBytes(mp)
		e.Seq, e.Version, e.Time = math.MaxUint64, math.MaxUint64, widest
		if e.Host == "" {
			e.Host = host
		}
		b, err := e.MarshalJSON() // as wireEvent
		if err != nil {
			return domains.Errorf(domains.CodeInvalid, "a %s event for domain %s cannot be encoded as JSON: %w", e.Type, e.Domain, err)
		}
		if len(b) > limit {
			return domains.Errorf(domains.CodeInvalid,
				"a %s event for domain %s would be %d bytes as JSON, more than the bus carries in one message (%d bytes, from its max payload %d): nothing was appended; make the config smaller",
				e.Type, e.Domain, len(b), limit, mp)
		}
		return nil
	}
}

// GuardEventLog refuses, before anything is written, any append with an
// event that check refuses (CheckEventSize): the agent installs it
// around the store so that no event the bus cannot carry enters the log,
// whatever path appends it.
func GuardEventLog(log domains.EventLog, check func(domains.Event) error) domains.EventLog {
	return guardedLog{EventLog: log, check: check}
}

type guardedLog struct {
	domains.EventLog
	check func(domains.Event) error
}

func (g guardedLog) Append(ctx context.Context, req domains.AppendRequest) ([]uint64, error) {
	for _, e := range req.Events {
		if e.Domain == uuid.Nil {
			e.Domain = req.Domain
		}
		if err := g.check(e); err != nil {
			return nil, err
		}
	}
	return g.EventLog.Append(ctx, req)
}
