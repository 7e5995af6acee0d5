package qmp

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is one asynchronous QMP event.
type Event struct {
	Name      string          // e.g. "SHUTDOWN"
	Timestamp time.Time       // QEMU's host time when it emitted the event (UTC); zero if unknown
	Data      json.RawMessage // the "data" member; nil when absent
}

// Names of the events vmledger models.
const (
	EventStop          = "STOP"
	EventResume        = "RESUME"
	EventShutdown      = "SHUTDOWN"
	EventReset         = "RESET"
	EventPowerdown     = "POWERDOWN"
	EventGuestPanicked = "GUEST_PANICKED"
	EventRTCChange     = "RTC_CHANGE"
	EventMigration     = "MIGRATION"
	EventMigrationPass = "MIGRATION_PASS"
	EventDeviceDeleted = "DEVICE_DELETED"
	EventUnplugError   = "DEVICE_UNPLUG_GUEST_ERROR"
	EventBlockIOError  = "BLOCK_IO_ERROR"
)

// EventData is implemented by the typed payloads below.
type EventData interface{ EventName() string }

// StopEvent: the guest's vCPUs stopped (any reason; query-status says which).
type StopEvent struct{}

// ResumeEvent: the guest's vCPUs run again.
type ResumeEvent struct{}

// PowerdownEvent: an ACPI power button press was requested (system_powerdown).
type PowerdownEvent struct{}

// ShutdownEvent: the guest shut down or was asked to (quit, ACPI, ...).
type ShutdownEvent struct {
	Guest  bool   `json:"guest"`  // true if the guest initiated it
	Reason string `json:"reason"` // QAPI ShutdownCause, e.g. "guest-shutdown", "host-qmp-quit"
}

// ResetEvent: the machine was reset.
type ResetEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"` // ShutdownCause, e.g. "guest-reset", "host-qmp-system-reset"
}

// GuestPanickedEvent: the guest reported a panic (pvpanic, Hyper-V crash MSRs).
type GuestPanickedEvent struct {
	Action string          `json:"action"`         // "pause", "poweroff" or "run"
	Info   json.RawMessage `json:"info,omitempty"` // GuestPanicInformation, hypervisor specific; may be nil
}

// RTCChangeEvent: the guest set its RTC. Offset is relative to the -rtc base
// QEMU was started with, not to the previous setting (docs/events.md, "The clock").
type RTCChangeEvent struct {
	Offset  int64  `json:"offset"`   // seconds
	QOMPath string `json:"qom-path"` // the RTC device (QEMU >= 7.0); may be empty
}

// MigrationEvent: the migration state machine moved.
type MigrationEvent struct {
	Status string `json:"status"` // QAPI MigrationStatus, e.g. "active", "completed", "failed"
}

// MigrationPassEvent: a new pass over dirty RAM started.
type MigrationPassEvent struct {
	Pass int64 `json:"pass"`
}

// DeviceDeletedEvent: a device (or its backend) was unplugged.
type DeviceDeletedEvent struct {
	Device string `json:"device,omitempty"` // the id given to device_add; absent for id-less devices
	Path   string `json:"path"`             // QOM path
}

// UnplugErrorEvent: the guest refused to release a device (QEMU 6.2+,
// pseries and ACPI memory unplug).
type UnplugErrorEvent struct {
	Device string `json:"device,omitempty"`
	Path   string `json:"path"`
}

// BlockIOErrorEvent: a disk I/O error, minimally modelled.
type BlockIOErrorEvent struct {
	QOMPath   string `json:"qom-path"`
	Device    string `json:"device"`
	NodeName  string `json:"node-name,omitempty"`
	Operation string `json:"operation"` // "read" or "write"
	Action    string `json:"action"`    // "ignore", "report" or "stop"
	NoSpace   bool   `json:"nospace,omitempty"`
	Reason    string `json:"reason"`
}

func (StopEvent) EventName() string          { return EventStop }
func (ResumeEvent) EventName() string        { return EventResume }
func (PowerdownEvent) EventName() string     { return EventPowerdown }
func (ShutdownEvent) EventName() string      { return EventShutdown }
func (ResetEvent) EventName() string         { return EventReset }
func (GuestPanickedEvent) EventName() string { return EventGuestPanicked }
func (RTCChangeEvent) EventName() string     { return EventRTCChange }
func (MigrationEvent) EventName() string     { return EventMigration }
func (MigrationPassEvent) EventName() string { return EventMigrationPass }
func (DeviceDeletedEvent) EventName() string { return EventDeviceDeleted }
func (BlockIOErrorEvent) EventName() string  { return EventBlockIOError }
func (UnplugErrorEvent) EventName() string   { return EventUnplugError }

// requiredMembers lists, per event, the data members QAPI marks mandatory
// whose absence would make the typed value lie (a missing offset is not 0).
func requiredMembers(event string) []string {
	switch event {
	case EventShutdown, EventReset:
		return []string{"guest", "reason"}
	case EventGuestPanicked:
		return []string{"action"}
	case EventRTCChange:
		return []string{"offset"}
	case EventMigration:
		return []string{"status"}
	case EventMigrationPass:
		return []string{"pass"}
	case EventDeviceDeleted, EventUnplugError:
		return []string{"path"}
	case EventBlockIOError:
		return []string{"operation", "action"}
	}
	return nil
}

// Decode returns the typed payload of the events listed above, as a value
// (e.g. ShutdownEvent, not *ShutdownEvent), for use in a type switch. For any
// other event it returns (nil, nil): QEMU emits dozens of events vmledger does
// not model, and receiving one is not an error.
func (e Event) Decode() (EventData, error) {
	var v EventData
	var err error
	switch e.Name {
	case EventStop:
		return StopEvent{}, nil
	case EventResume:
		return ResumeEvent{}, nil
	case EventPowerdown:
		return PowerdownEvent{}, nil
	case EventShutdown:
		v, err = decodeData[ShutdownEvent](e)
	case EventReset:
		v, err = decodeData[ResetEvent](e)
	case EventGuestPanicked:
		v, err = decodeData[GuestPanickedEvent](e)
	case EventRTCChange:
		v, err = decodeData[RTCChangeEvent](e)
	case EventMigration:
		v, err = decodeData[MigrationEvent](e)
	case EventMigrationPass:
		v, err = decodeData[MigrationPassEvent](e)
	case EventDeviceDeleted:
		v, err = decodeData[DeviceDeletedEvent](e)
	case EventBlockIOError:
		v, err = decodeData[BlockIOErrorEvent](e)
	case EventUnplugError:
		v, err = decodeData[UnplugErrorEvent](e)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("qmp: event %s: %w", e.Name, err)
	}
	return v, nil
}

func decodeData[T EventData](e Event) (T, error) {
	var v T
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}") // absent data: report the missing members
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return v, fmt.Errorf("data: %w", err)
	}
	for _, name := range requiredMembers(e.Name) {
		if _, ok := members[name]; !ok {
			return v, fmt.Errorf("data: missing %q", name)
		}
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("data: %w", err)
	}
	return v, nil
}
