package domains

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// wireEvent is the JSON form of an event: on NATS, in exports, in --json.
type wireEvent struct {
	Seq       uint64          `json:"seq"`
	Domain    uuid.UUID       `json:"domain"`
	Version   uint64          `json:"version"`
	Type      Type            `json:"type"`
	Schema    uint16          `json:"schema"`
	Time      time.Time       `json:"time"`
	CommandID string          `json:"command_id,omitempty"`
	Host      string          `json:"host"`
	Payload   json.RawMessage `json:"payload"`
}

// MarshalJSON renders the event with its typed payload.
func (e Event) MarshalJSON() ([]byte, error) {
	if e.Payload == nil {
		return nil, fmt.Errorf("event %d: no payload", e.Seq)
	}
	p, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(wireEvent{
		Seq: e.Seq, Domain: e.Domain, Version: e.Version, Type: e.Type, Schema: e.Schema,
		Time: e.Time, CommandID: e.CommandID, Host: e.Host, Payload: p,
	})
}

// UnmarshalJSON decodes an event, refusing unknown types and payloads that
// do not fit their type.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t := internType([]byte(w.Type))
	if t == "" {
		return fmt.Errorf("unknown event type %q", w.Type)
	}
	if w.Schema != currentSchema(t) {
		return fmt.Errorf("%s: schema version %d in JSON (current %d): JSON carries current-schema events only", t, w.Schema, currentSchema(t))
	}
	if len(w.Payload) == 0 || string(w.Payload) == "null" {
		return fmt.Errorf("%s: missing payload", t)
	}
	p, err := decodePayloadJSON(t, w.Payload, func(b []byte, v any) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	})
	if err != nil {
		return fmt.Errorf("%s payload: %w", t, err)
	}
	*e = Event{
		Seq: w.Seq, Domain: w.Domain, Version: w.Version, Type: t, Schema: w.Schema,
		Time: w.Time.UTC(), CommandID: w.CommandID, Host: w.Host, Payload: p,
	}
	return nil
}
