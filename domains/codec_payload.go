package domains

import (
	"encoding/json"
	"fmt"
)

// Payloads that carry a whole Config (defined, config-updated, and a device
// inside device-attached) keep it as JSON inside the binary frame: they are
// rare, and JSON lets the config schema grow without a codec change. The
// frequent events are plain binary.

func encodePayload(w *writer, p Payload) error {
	switch v := p.(type) {
	case Defined:
		return encodeJSON(w, v.Config)
	case ConfigUpdated:
		return encodeJSON(w, v.Config)
	case Undefined:
	case Started:
		w.str(v.Reason)
		w.str(v.Accel)
		w.varint(int64(v.PID))
		w.varint(v.ClockBase)
	case Paused:
		w.str(v.Reason)
	case Resumed:
		w.str(v.Reason)
	case Shutdown:
		w.str(v.Reason)
		w.str(v.QEMUReason)
	case Stopped:
		w.str(v.Reason)
		w.str(v.Detail)
	case Reset:
		w.bool(v.Guest)
		w.str(v.Reason)
	case Crashed:
		w.str(v.Reason)
		w.str(v.Action)
		w.str(v.Info)
	case RTCChanged:
		w.varint(v.Offset)
		w.varint(v.Adjustment)
	case DeviceAttached:
		w.bool(v.Live)
		return encodeJSON(w, v.Device)
	case DeviceDetachRequested:
		w.str(v.ID)
	case DeviceDetached:
		w.str(v.ID)
	case DeviceDetachFailed:
		w.str(v.ID)
		w.str(v.Error)
	case JobStarted:
		w.str(v.Path)
		w.str(v.Format)
	case JobCompleted:
		w.str(v.Path)
		w.uvarint(v.Bytes)
		w.str(v.Digest)
	case JobFailed:
		w.str(v.Path)
		w.str(v.Error)
	case MigrationState:
		w.str(v.Role)
		w.str(v.From)
		w.str(v.To)
		w.str(v.Peer)
		w.str(v.Reason)
	case MigrationIteration:
		w.uvarint(v.Pass)
		w.uvarint(v.Remaining)
		w.uvarint(v.Sent)
	default:
		return fmt.Errorf("no binary encoding for payload %T", p)
	}
	return nil
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

func decodePayload(r *reader, t Type, schema uint16) (Payload, error) {
	if schema != currentSchema(t) {
		return upcast(r, t, schema)
	}
	var p Payload
	var err error
	switch t {
	case TypeDefined:
		var v Defined
		err = decodeJSON(r, &v.Config)
		p = v
	case TypeConfigUpdated:
		var v ConfigUpdated
		err = decodeJSON(r, &v.Config)
		p = v
	case TypeUndefined:
		p = Undefined{}
	case TypeStarted:
		p = Started{Reason: r.str(), Accel: r.str(), PID: int(r.varint()), ClockBase: r.varint()}
	case TypePaused:
		p = Paused{Reason: r.str()}
	case TypeResumed:
		p = Resumed{Reason: r.str()}
	case TypeShutdown:
		p = Shutdown{Reason: r.str(), QEMUReason: r.str()}
	case TypeStopped:
		p = Stopped{Reason: r.str(), Detail: r.str()}
	case TypeReset:
		p = Reset{Guest: r.bool(), Reason: r.str()}
	case TypeCrashed:
		p = Crashed{Reason: r.str(), Action: r.str(), Info: r.str()}
	case TypeRTCChanged:
		p = RTCChanged{Offset: r.varint(), Adjustment: r.varint()}
	case TypeDeviceAttached:
		v := DeviceAttached{Live: r.bool()}
		err = decodeJSON(r, &v.Device)
		p = v
	case TypeDeviceDetachRequested:
		p = DeviceDetachRequested{ID: r.str()}
	case TypeDeviceDetached:
		p = DeviceDetached{ID: r.str()}
	case TypeDeviceDetachFailed:
		p = DeviceDetachFailed{ID: r.str(), Error: r.str()}
	case TypeSaveStarted, TypeRestoreStarted, TypeDumpStarted:
		p = JobStarted{Kind: t, Path: r.str(), Format: r.str()}
	case TypeSaveCompleted, TypeRestoreCompleted, TypeDumpCompleted:
		p = JobCompleted{Kind: t, Path: r.str(), Bytes: r.uvarint(), Digest: r.str()}
	case TypeSaveFailed, TypeRestoreFailed, TypeDumpFailed:
		p = JobFailed{Kind: t, Path: r.str(), Error: r.str()}
	case TypeMigrationState:
		p = MigrationState{Role: r.str(), From: r.str(), To: r.str(), Peer: r.str(), Reason: r.str()}
	case TypeMigrationIteration:
		p = MigrationIteration{Pass: r.uvarint(), Remaining: r.uvarint(), Sent: r.uvarint()}
	default:
		return nil, fmt.Errorf("unknown type %q: %w", t, ErrCorrupt)
	}
	if err != nil {
		return nil, err
	}
	return p, r.done()
}

// done reports the reader's first error, or trailing bytes: a payload must
// use its frame exactly, whichever schema version decoded it.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrCorrupt)
	}
	return nil
}
