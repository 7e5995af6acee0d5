package domains

import (
	"encoding/json"
	"fmt"
)

// catalogue is THE table of event types: for each, its stable type string,
// its payload schema version, and how its payload is made, encoded,
// decoded and folded. Adding a type is one row here plus its row in
// docs/events.md (TestEventRegistry fails when either part is missing).
// The JSON form is the payload struct's own tags; the codec and JSON
// decoding, Types(), Valid() and Projection.Apply all read this table.
var catalogue = []eventSpec{
	row(TypeDefined, 1, zero[Defined],
		func(w *writer, v Defined) error { return encodeJSON(w, v.Config) },
		func(r *reader, _ Type) (v Defined, err error) { err = decodeJSON(r, &v.Config); return },
		nil), // Apply creates the domain itself
	row(TypeUndefined, 1, zero[Undefined],
		func(*writer, Undefined) error { return nil },
		func(*reader, Type) (Undefined, error) { return Undefined{}, nil },
		nil), // Apply removes the domain itself
	row(TypeConfigUpdated, 1, zero[ConfigUpdated],
		func(w *writer, v ConfigUpdated) error { return encodeJSON(w, v.Config) },
		func(r *reader, _ Type) (v ConfigUpdated, err error) { err = decodeJSON(r, &v.Config); return },
		func(d *Domain, v ConfigUpdated, _ Event) error { d.Config = v.Config.Clone(); return nil }),

	row(TypeStarted, 1, zero[Started],
		func(w *writer, v Started) error {
			w.str(v.Reason)
			w.str(v.Accel)
			w.varint(int64(v.PID))
			w.varint(v.ClockBase)
			return nil
		},
		func(r *reader, _ Type) (Started, error) {
			return Started{Reason: r.str(), Accel: r.str(), PID: int(r.varint()), ClockBase: r.varint()}, nil
		},
		func(d *Domain, v Started, e Event) error {
			d.Reason = v.Reason
			lc := d.Config.Clone()
			d.Live = &Live{Accel: v.Accel, PID: v.PID, ClockBase: v.ClockBase, RTC: v.ClockBase, Started: e.Time}
			d.Running, d.Pending = &lc, nil
			return nil
		}),
	row(TypePaused, 1, zero[Paused],
		func(w *writer, v Paused) error { w.str(v.Reason); return nil },
		func(r *reader, _ Type) (Paused, error) { return Paused{Reason: r.str()}, nil },
		func(d *Domain, v Paused, _ Event) error { d.Reason = v.Reason; return nil }),
	row(TypeResumed, 1, zero[Resumed],
		func(w *writer, v Resumed) error { w.str(v.Reason); return nil },
		func(r *reader, _ Type) (Resumed, error) { return Resumed{Reason: r.str()}, nil },
		func(d *Domain, v Resumed, _ Event) error { d.Reason = v.Reason; return nil }),
	row(TypeShutdown, 2, zero[Shutdown], // schema 1: upcast.go
		func(w *writer, v Shutdown) error { w.str(v.Reason); w.str(v.QEMUReason); return nil },
		func(r *reader, _ Type) (Shutdown, error) { return Shutdown{Reason: r.str(), QEMUReason: r.str()}, nil },
		func(d *Domain, v Shutdown, _ Event) error { d.Reason = v.Reason; return nil }),
	row(TypeStopped, 1, zero[Stopped],
		func(w *writer, v Stopped) error { w.str(v.Reason); w.str(v.Detail); return nil },
		func(r *reader, _ Type) (Stopped, error) { return Stopped{Reason: r.str(), Detail: r.str()}, nil },
		func(d *Domain, v Stopped, _ Event) error {
			d.Reason, d.Live, d.Running, d.Pending = v.Reason, nil, nil, nil
			return nil
		}),
	row(TypeReset, 1, zero[Reset],
		func(w *writer, v Reset) error { w.bool(v.Guest); w.str(v.Reason); return nil },
		func(r *reader, _ Type) (Reset, error) { return Reset{Guest: r.bool(), Reason: r.str()}, nil },
		nil),
	row(TypeCrashed, 1, zero[Crashed],
		func(w *writer, v Crashed) error { w.str(v.Reason); w.str(v.Action); w.str(v.Info); return nil },
		func(r *reader, _ Type) (Crashed, error) {
			return Crashed{Reason: r.str(), Action: r.str(), Info: r.str()}, nil
		},
		func(d *Domain, v Crashed, _ Event) error { d.Reason = v.Reason; return nil }),

	row(TypeRTCChanged, 1, zero[RTCChanged],
		func(w *writer, v RTCChanged) error { w.varint(v.Offset); w.varint(v.Adjustment); return nil },
		func(r *reader, _ Type) (RTCChanged, error) {
			return RTCChanged{Offset: r.varint(), Adjustment: r.varint()}, nil
		},
		foldRTC),

	row(TypeDeviceAttached, 2, zero[DeviceAttached], // schema 1: upcast.go
		func(w *writer, v DeviceAttached) error {
			w.bool(v.Live)
			if err := encodeJSON(w, v.Device); err != nil {
				return err
			}
			w.bool(v.Persist)
			return encodeJSON(w, v.Spec)
		},
		func(r *reader, _ Type) (v DeviceAttached, err error) {
			v.Live = r.bool()
			if err = decodeJSON(r, &v.Device); err != nil {
				return
			}
			v.Persist = r.bool()
			err = decodeJSON(r, &v.Spec)
			return
		},
		foldAttached),
	row(TypeDeviceDetachRequested, 2, zero[DeviceDetachRequested],
		func(w *writer, v DeviceDetachRequested) error { w.str(v.ID); w.bool(v.Persist); return nil },
		func(r *reader, _ Type) (DeviceDetachRequested, error) {
			return DeviceDetachRequested{ID: r.str(), Persist: r.bool()}, nil
		},
		foldDetachRequested),
	row(TypeDeviceDetached, 2, zero[DeviceDetached],
		func(w *writer, v DeviceDetached) error { w.str(v.ID); w.bool(v.Live); w.bool(v.Persist); return nil },
		func(r *reader, _ Type) (DeviceDetached, error) {
			return DeviceDetached{ID: r.str(), Live: r.bool(), Persist: r.bool()}, nil
		},
		foldDetached),
	row(TypeDeviceDetachFailed, 1, zero[DeviceDetachFailed],
		func(w *writer, v DeviceDetachFailed) error { w.str(v.ID); w.str(v.Error); return nil },
		func(r *reader, _ Type) (DeviceDetachFailed, error) {
			return DeviceDetachFailed{ID: r.str(), Error: r.str()}, nil
		},
		func(d *Domain, v DeviceDetachFailed, _ Event) error {
			d.Pending = without(d.Pending, v.ID)
			return nil
		}),

	transferStarted(TypeSaveStarted), transferCompleted(TypeSaveCompleted), transferFailed(TypeSaveFailed),
	transferStarted(TypeRestoreStarted), transferCompleted(TypeRestoreCompleted), transferFailed(TypeRestoreFailed),
	row(TypeManagedSaveRemoved, 1, zero[ManagedSaveRemoved],
		func(w *writer, v ManagedSaveRemoved) error { w.str(v.Path); w.str(v.Reason); return nil },
		func(r *reader, _ Type) (ManagedSaveRemoved, error) {
			return ManagedSaveRemoved{Path: r.str(), Reason: r.str()}, nil
		},
		nil),

	row(TypeMigrationState, 2, zero[MigrationState], // schema 1: upcast.go
		func(w *writer, v MigrationState) error {
			w.str(v.Role)
			w.str(v.From)
			w.str(v.To)
			w.str(v.Peer)
			w.str(v.Reason)
			w.uvarint(v.Epoch)
			return nil
		},
		func(r *reader, _ Type) (MigrationState, error) {
			return MigrationState{Role: r.str(), From: r.str(), To: r.str(), Peer: r.str(), Reason: r.str(), Epoch: r.uvarint()}, nil
		},
		foldMigrationState),
	row(TypeMigrationIteration, 1, zero[MigrationIteration],
		func(w *writer, v MigrationIteration) error {
			w.uvarint(v.Pass)
			w.uvarint(v.Remaining)
			w.uvarint(v.Sent)
			return nil
		},
		func(r *reader, _ Type) (MigrationIteration, error) {
			return MigrationIteration{Pass: r.uvarint(), Remaining: r.uvarint(), Sent: r.uvarint()}, nil
		},
		nil),

	transferStarted(TypeDumpStarted), dumpCompletedRow, transferFailed(TypeDumpFailed),

	row(TypeJobStarted, 1, zero[JobStarted],
		func(w *writer, v JobStarted) error { w.str(v.ID); w.str(string(v.Kind)); return nil },
		func(r *reader, _ Type) (JobStarted, error) {
			return JobStarted{ID: r.str(), Kind: JobKind(r.str())}, nil
		},
		func(d *Domain, v JobStarted, e Event) error {
			if d.Job != nil {
				return fmt.Errorf("job %s started while job %s runs: %w", v.ID, d.Job.ID, ErrCorrupt)
			}
			d.Job = &ActiveJob{ID: v.ID, Kind: v.Kind, CommandID: e.CommandID, Started: e.Time}
			return nil
		}),
	row(TypeJobCompleted, 1, zero[JobCompleted],
		func(w *writer, v JobCompleted) error { w.str(v.ID); w.str(string(v.Kind)); return nil },
		func(r *reader, _ Type) (JobCompleted, error) {
			return JobCompleted{ID: r.str(), Kind: JobKind(r.str())}, nil
		},
		func(d *Domain, v JobCompleted, _ Event) error { return endJob(d, v.ID) }),
	row(TypeJobFailed, 1, zero[JobFailed],
		func(w *writer, v JobFailed) error {
			w.str(v.ID)
			w.str(string(v.Kind))
			w.str(v.Reason)
			w.str(v.Error)
			return nil
		},
		func(r *reader, _ Type) (JobFailed, error) {
			return JobFailed{ID: r.str(), Kind: JobKind(r.str()), Reason: r.str(), Error: r.str()}, nil
		},
		func(d *Domain, v JobFailed, _ Event) error { return endJob(d, v.ID) }),

	autostartRow, monitorCommandRow, // virsh.go
}

// eventSpec is one row of the catalogue, with the payload type erased.
type eventSpec struct {
	typ    Type
	schema uint16
	// jsonTarget returns a pointer to decode a payload's JSON into, and
	// the function that returns the decoded value.
	jsonTarget func() (any, func() Payload)
	encode     func(*writer, Payload) error
	decode     func(*reader, Type) (Payload, error)
	// fold applies the payload to the domain; it checks the payload's Go
	// type before changing anything.
	fold func(*Domain, Event) error
	// folds is false where the payload changes nothing but, through the
	// state table, the state.
	folds bool
}

// row builds a catalogue row from typed functions. mk makes the zero
// payload of the type (payloads shared by several types carry it).
func row[P Payload](t Type, schema uint16, mk func(Type) P, enc func(*writer, P) error,
	dec func(*reader, Type) (P, error), fold func(*Domain, P, Event) error) eventSpec {
	typed := func(p Payload) (P, error) {
		v, ok := p.(P)
		if !ok {
			return v, fmt.Errorf("%s payload %T: %w", t, p, ErrCorrupt)
		}
		return v, nil
	}
	return eventSpec{
		typ: t, schema: schema,
		jsonTarget: func() (any, func() Payload) {
			v := mk(t)
			return &v, func() Payload { return v }
		},
		encode: func(w *writer, p Payload) error {
			v, err := typed(p)
			if err != nil {
				return err
			}
			return enc(w, v)
		},
		decode: func(r *reader, t Type) (Payload, error) { return dec(r, t) },
		fold: func(d *Domain, e Event) error {
			v, err := typed(e.Payload)
			if err != nil || fold == nil {
				return err
			}
			return fold(d, v, e)
		},
		folds: fold != nil,
	}
}

func zero[P Payload](Type) P { var p P; return p }

func transferStarted(t Type) eventSpec {
	return row(t, 1, func(t Type) TransferStarted { return TransferStarted{Kind: t} },
		func(w *writer, v TransferStarted) error { w.str(v.Path); w.str(v.Format); return nil },
		func(r *reader, t Type) (TransferStarted, error) {
			return TransferStarted{Kind: t, Path: r.str(), Format: r.str()}, nil
		},
		nil)
}

func transferCompleted(t Type) eventSpec {
	return row(t, 1, func(t Type) TransferCompleted { return TransferCompleted{Kind: t} },
		func(w *writer, v TransferCompleted) error {
			w.str(v.Path)
			w.uvarint(v.Bytes)
			w.str(v.Digest)
			return nil
		},
		func(r *reader, t Type) (TransferCompleted, error) {
			return TransferCompleted{Kind: t, Path: r.str(), Bytes: r.uvarint(), Digest: r.str()}, nil
		},
		nil)
}

func transferFailed(t Type) eventSpec {
	return row(t, 1, func(t Type) TransferFailed { return TransferFailed{Kind: t} },
		func(w *writer, v TransferFailed) error { w.str(v.Path); w.str(v.Error); return nil },
		func(r *reader, t Type) (TransferFailed, error) {
			return TransferFailed{Kind: t, Path: r.str(), Error: r.str()}, nil
		},
		nil)
}

func foldRTC(d *Domain, v RTCChanged, _ Event) error {
	if d.Config.Clock.Offset == OffsetVariable {
		// The adjustment is already absolute and UTC-based (clock base +
		// QEMU's offset), so the basis becomes utc.
		d.Config.Clock.Adjustment = v.Adjustment
		d.Config.Clock.Basis = BasisUTC
		if d.Running != nil {
			d.Running.Clock = d.Config.Clock
		}
	}
	if d.Live != nil {
		d.Live.RTC = v.Adjustment
	}
	return nil
}

// endJob clears the domain's running job; the ID must be the one that
// started.
func endJob(d *Domain, id string) error {
	if d.Job == nil || d.Job.ID != id {
		return fmt.Errorf("job %s ended but is not the running job: %w", id, ErrCorrupt)
	}
	d.Job = nil
	return nil
}

// specs indexes the catalogue by type string: open addressing over a
// small array, built once from the table and never changed. Replay looks
// a type up for each event it decodes and folds, and this is several
// times cheaper than a map's string hashing.
var specs = func() (t [specSlots]*eventSpec) {
	if len(catalogue) > specSlots/2 {
		panic("domains: the event catalogue outgrew its index")
	}
	for i := range catalogue {
		h := typeHash([]byte(catalogue[i].typ))
		for t[h] != nil {
			if t[h].typ == catalogue[i].typ {
				panic("domains: event type " + string(catalogue[i].typ) + " is in the catalogue twice")
			}
			h = (h + 1) % specSlots
		}
		t[h] = &catalogue[i]
	}
	return t
}()

const specSlots = 128

func typeHash(s []byte) int {
	if len(s) == 0 {
		return 0
	}
	return (len(s)*31 + int(s[0])*7 + int(s[len(s)-1])*3 + int(s[len(s)/2])) % specSlots
}

// lookup finds the catalogue row of a type string (raw bytes from the
// codec, without allocating), nil when unknown.
func lookup(s []byte) *eventSpec {
	for h := typeHash(s); specs[h] != nil; h = (h + 1) % specSlots {
		if string(specs[h].typ) == string(s) {
			return specs[h]
		}
	}
	return nil
}

// spec is lookup for a Type (the conversion to bytes does not escape).
func spec(t Type) *eventSpec { return lookup([]byte(t)) }

// Types lists every event type, in catalogue order.
func Types() []Type {
	out := make([]Type, len(catalogue))
	for i, s := range catalogue {
		out[i] = s.typ
	}
	return out
}

// internType maps raw bytes to the Type constant without allocating, or ""
// when unknown.
func internType(b []byte) Type {
	if s := lookup(b); s != nil {
		return s.typ
	}
	return ""
}

func currentSchema(t Type) uint16 {
	if s := spec(t); s != nil {
		return s.schema
	}
	return 1
}

func encodePayload(w *writer, p Payload) error {
	s := spec(p.EventType())
	if s == nil {
		return fmt.Errorf("no binary encoding for payload %T", p)
	}
	return s.encode(w, p)
}

// decodePayload decodes a payload of the row's type written at schema.
func (s *eventSpec) decodePayload(r *reader, schema uint16) (Payload, error) {
	if schema != s.schema {
		return upcast(r, s.typ, schema)
	}
	p, err := s.decode(r, s.typ)
	if err != nil {
		return nil, err
	}
	return p, r.done()
}

// decodePayloadJSON decodes the JSON payload of an event of type t.
func decodePayloadJSON(t Type, b []byte, decode func([]byte, any) error) (Payload, error) {
	s := spec(t)
	if s == nil {
		return nil, fmt.Errorf("unknown event type %q", t)
	}
	target, value := s.jsonTarget()
	if err := decode(b, target); err != nil {
		return nil, err
	}
	return value(), nil
}

func encodeJSON(w *writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.bytes(b)
	return nil
}

func decodeJSON(r *reader, v any) error {
	b := r.raw()
	if r.err != nil {
		return r.err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}
