package domains

import "fmt"

// Schema evolution: each event type has a payload schema version. Events
// are never rewritten in place; an older payload is upcast to the current
// shape when read. currentSchema is the version new events are written at.
func currentSchema(t Type) uint16 {
	switch t {
	default:
		return 1
	}
}

// upcast decodes a payload written at an older schema version.
func upcast(r *reader, t Type, schema uint16) (Payload, error) {
	return nil, fmt.Errorf("%s schema version %d is not known to this release (current %d): %w",
		t, schema, currentSchema(t), ErrCorrupt)
}
