package domains

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// The binary envelope is what the store keeps. It is hand-written rather
// than JSON or gob because replay must fold millions of events a second:
// no reflection, no per-field allocation, a type switch on interned
// strings. Layout (after the store's 8-byte big-endian sequence key):
//
//	byte     codec version (1)
//	[16]byte domain UUID
//	uvarint  per-domain version
//	string   type            (uvarint length + bytes)
//	uvarint  payload schema version
//	varint   time, Unix nanoseconds
//	string   command ID
//	string   host
//	...      payload, per type (codec_payload.go)
const codecVersion = 1

// ErrCorrupt marks bytes that are not a valid event.
var ErrCorrupt = errors.New("corrupt event")

// MarshalBinary appends the binary form of e (without Seq) to dst.
func (e *Event) MarshalBinary(dst []byte) ([]byte, error) {
	if e.Payload == nil || e.Payload.EventType() != e.Type {
		return nil, fmt.Errorf("event %q: payload does not match type", e.Type)
	}
	if !timeEncodable(e.Time) {
		return nil, fmt.Errorf("event %q: time %s outside the years 1678-2262 the codec holds", e.Type, e.Time.Format(time.RFC3339Nano))
	}
	w := writer{b: dst}
	w.b = append(w.b, codecVersion)
	w.b = append(w.b, e.Domain[:]...)
	w.uvarint(e.Version)
	w.str(string(e.Type))
	w.uvarint(uint64(e.Schema))
	w.varint(e.Time.UnixNano())
	w.str(e.CommandID)
	w.str(e.Host)
	if err := encodePayload(&w, e.Payload); err != nil {
		return nil, fmt.Errorf("event %q: %w", e.Type, err)
	}
	return w.b, nil
}

// timeEncodable: t survives Unix nanoseconds in an int64 (found by
// FuzzEventJSON: the zero time came back as 1754).
func timeEncodable(t time.Time) bool { return time.Unix(0, t.UnixNano()).Equal(t) }

// UnmarshalEvent decodes b (as made by MarshalBinary) into an event with
// the given sequence. Payloads of older schema versions are upcast.
func UnmarshalEvent(seq uint64, b []byte) (Event, error) {
	var e Event
	r := reader{b: b}
	if v := r.byte(); v != codecVersion {
		return e, fmt.Errorf("seq %d: codec version %d: %w", seq, v, ErrCorrupt)
	}
	copy(e.Domain[:], r.bytes(16))
	e.Version = r.uvarint()
	tb := r.raw()
	schema := r.uvarint()
	e.Schema = uint16(schema)
	e.Time = time.Unix(0, r.varint()).UTC()
	e.CommandID = r.str()
	e.Host = r.str()
	if r.err != nil {
		return e, fmt.Errorf("seq %d: envelope: %w", seq, r.err)
	}
	if schema > 0xffff {
		return e, fmt.Errorf("seq %d: schema version %d: %w", seq, schema, ErrCorrupt)
	}
	e.Seq = seq
	// One look-up in the catalogue serves the type, its decoder and its
	// schema: replay does this a million times a second.
	sp := lookup(tb)
	if sp == nil {
		return e, fmt.Errorf("seq %d: unknown event type %q: %w", seq, tb, ErrCorrupt)
	}
	e.Type = sp.typ
	p, err := sp.decodePayload(&r, e.Schema)
	if err != nil {
		return e, fmt.Errorf("seq %d: %s payload: %w", seq, e.Type, err)
	}
	e.Payload = p
	e.Schema = sp.schema
	return e, nil
}

// PeekDomain returns the domain and version of an encoded event without
// decoding the rest: the store's per-domain index and verify use it.
func PeekDomain(b []byte) (uuid.UUID, uint64, error) {
	var id uuid.UUID
	if len(b) < 18 || b[0] != codecVersion {
		return id, 0, ErrCorrupt
	}
	copy(id[:], b[1:17])
	v, n := binary.Uvarint(b[17:])
	if n <= 0 {
		return id, 0, ErrCorrupt
	}
	return id, v, nil
}

type writer struct{ b []byte }

func (w *writer) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *writer) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *writer) bytes(p []byte)   { w.uvarint(uint64(len(p))); w.b = append(w.b, p...) }
func (w *writer) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// reader records the first error and returns zero values after it, so
// decoders read straight through and check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("truncated or malformed: %w", ErrCorrupt)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return make([]byte, n&0xffff)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// raw returns a length-prefixed byte string without copying.
func (r *reader) raw() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	return r.bytes(int(n))
}

func (r *reader) str() string {
	b := r.raw()
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

func (r *reader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail()
	return false
}
