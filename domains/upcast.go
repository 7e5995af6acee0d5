package domains

import "fmt"

// Schema evolution: each event type has a payload schema version. Events
// are never rewritten in place; an older payload is upcast to the current
// shape when read, so every log ever written replays with every later
// release (store/testdata keeps a log of release 0.1 to prove it).
// The version new events are written at is the type's row in the
// catalogue (registry.go).
//
// History of shape changes (docs/replay.md):
//
//	device-attached, device-detach-requested, device-detached 1 → 2:
//	                live and persistent config apart (virsh --live,
//	                --config), and device-attached carries a DeviceSpec.
//
//	shutdown 1 → 2: `guest bool` became `reason "guest"|"host"`, to match
//	                libvirt's SHUTDOWN_GUEST / SHUTDOWN_HOST details and
//	                leave room for more origins without another bool.
//
//	dump-completed 1 → 2: the shared transfer layout (path, bytes, digest)
//	                became path, format, bytes, duration_ms (docs/coredump.md);
//	                v1 events read with an empty format and no duration.
//
//	migration-state 1 → 2: `epoch` (the ownership epoch, the fencing token
//	                of docs/migration.md) appended; v1 events read as 0.
//
// CurrentSchema is the payload schema version this release writes for t;
// tools that read raw logs use it to tell old payloads from new ones.
func CurrentSchema(t Type) uint16 { return currentSchema(t) }

// upcast decodes a payload written at an older schema version into the
// current payload struct. Each case reads the old binary layout exactly as
// the old release wrote it; the old Go struct is not kept, only its bytes.
func upcast(r *reader, t Type, schema uint16) (Payload, error) {
	var p Payload
	switch {
	case t == TypeDumpCompleted && schema == 1:
		// v1: string path, uvarint bytes, string digest (unused for dumps).
		v := DumpCompleted{Path: r.str(), Bytes: r.uvarint()}
		_ = r.str()
		p = v
	case t == TypeShutdown && schema == 1:
		// v1: bool guest, string qemu_reason.
		guest, qemuReason := r.bool(), r.str()
		reason := ShutdownHost
		if guest {
			reason = ShutdownGuest
		}
		p = Shutdown{Reason: reason, QEMUReason: qemuReason}
	case t == TypeDeviceAttached && schema == 1:
		// v1: bool live, JSON device; it always went into the config.
		v := DeviceAttached{Live: r.bool(), Persist: true}
		if err := decodeJSON(r, &v.Device); err != nil {
			return nil, err
		}
		p = v
	case t == TypeDeviceDetachRequested && schema == 1:
		p = DeviceDetachRequested{ID: r.str()}
	case t == TypeDeviceDetached && schema == 1:
		// v1 removed the device from the config (the only one there was).
		p = DeviceDetached{ID: r.str(), Live: true, Persist: true}
	case t == TypeMigrationState && schema == 1:
		// v1: role, from, to, peer, reason; no epoch.
		p = MigrationState{Role: r.str(), From: r.str(), To: r.str(), Peer: r.str(), Reason: r.str()}
	default:
		return nil, fmt.Errorf("%s schema version %d is not known to this release (current %d): %w",
			t, schema, currentSchema(t), ErrCorrupt)
	}
	return p, r.done()
}
