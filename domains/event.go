package domains

import (
	"time"

	"github.com/google/uuid"
)

// Type names an event. The strings are part of the on-disk and on-wire
// contract: they never change and are never derived from Go type names.
type Type string

const (
	TypeDefined       Type = "defined"
	TypeUndefined     Type = "undefined"
	TypeConfigUpdated Type = "config-updated"

	TypeStarted  Type = "started"
	TypePaused   Type = "paused"
	TypeResumed  Type = "resumed"
	TypeShutdown Type = "shutdown"
	TypeStopped  Type = "stopped"
	TypeReset    Type = "reset"
	TypeCrashed  Type = "crashed"

	TypeRTCChanged Type = "rtc-changed"

	TypeDeviceAttached        Type = "device-attached"
	TypeDeviceDetachRequested Type = "device-detach-requested"
	TypeDeviceDetached        Type = "device-detached"
	TypeDeviceDetachFailed    Type = "device-detach-failed"

	TypeSaveStarted      Type = "save-started"
	TypeSaveCompleted    Type = "save-completed"
	TypeSaveFailed       Type = "save-failed"
	TypeRestoreStarted   Type = "restore-started"
	TypeRestoreCompleted Type = "restore-completed"
	TypeRestoreFailed    Type = "restore-failed"
	// TypeManagedSaveRemoved: the domain's managed save image was
	// discarded (managedsave-remove, or start --force-boot).
	TypeManagedSaveRemoved Type = "managed-save-removed"

	TypeMigrationState     Type = "migration-state"
	TypeMigrationIteration Type = "migration-iteration"

	TypeDumpStarted   Type = "dump-started"
	TypeDumpCompleted Type = "dump-completed"
	TypeDumpFailed    Type = "dump-failed"

	TypeJobStarted   Type = "job-started"
	TypeJobCompleted Type = "job-completed"
	TypeJobFailed    Type = "job-failed"
)

// Valid reports whether t is a known event type.
func (t Type) Valid() bool { return internType([]byte(t)) != "" }

// Event is one committed fact about one domain.
//
// Seq is the global, gap-free sequence on this host; Version counts the
// domain's own events from 1. Both are assigned by the log on append.
type Event struct {
	Seq       uint64
	Domain    uuid.UUID
	Version   uint64
	Type      Type
	Schema    uint16 // payload schema version of this Type; see upcast.go
	Time      time.Time
	CommandID string // the command that caused it; empty for guest-initiated facts
	Host      string
	Payload   Payload
}

// Payload is the typed body of an event. Each Type has exactly one payload
// struct; the codec picks it by Type, never by reflection on Go names.
type Payload interface {
	EventType() Type
}

// NewEvent builds an unsequenced event; the log assigns Seq and Version.
func NewEvent(domain uuid.UUID, at time.Time, commandID, host string, p Payload) Event {
	return Event{
		Domain:    domain,
		Type:      p.EventType(),
		Schema:    currentSchema(p.EventType()),
		Time:      at.UTC(),
		CommandID: commandID,
		Host:      host,
		Payload:   p,
	}
}
