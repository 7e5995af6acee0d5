package domains

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// The service's view of the world: small interfaces, declared here by their
// consumer, implemented by store and hypervisor/qemu.

// AnyVersion skips the optimistic concurrency check of an append.
const AnyVersion = ^uint64(0)

// AppendRequest is one domain's events to append atomically.
type AppendRequest struct {
	Domain          uuid.UUID
	ExpectedVersion uint64
	Events          []Event
	CommandID       string // recorded with Result in the same transaction
	Result          []byte
	// CommandDigest (32 bytes, or none) binds CommandID to its request:
	// recorded with it, returned by Command.
	CommandDigest []byte
}

// EventLog is the durable log.
type EventLog interface {
	// Append returns the assigned sequences once the events are durable.
	Append(ctx context.Context, req AppendRequest) ([]uint64, error)
	// ReadAfter returns up to limit events with sequences after after.
	ReadAfter(ctx context.Context, after uint64, limit int) ([]Event, error)
	// Command returns what was recorded for a command ID.
	Command(ctx context.Context, id string) (rec CommandRecord, found bool, err error)
}

// CommandRecord is what the log keeps for a command ID: the sequence of
// its first event (its events are consecutive) and the result bytes.
type CommandRecord struct {
	FirstSeq uint64
	Result   []byte
	Digest   []byte // nil: recorded by an older vmledger, without one
}

// TimeSource is the host's time; tests fake it.
type TimeSource interface {
	Now() time.Time
}

// SystemClock is the real clock in the process's local zone.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Driver runs guests (hypervisor/qemu implements it).
type Driver interface {
	// Start launches the guest paused, configures it and lets it run; it
	// returns once the guest runs (or is paused, if spec.Paused).
	Start(ctx context.Context, spec StartSpec) (Guest, error)
	// Attach reconnects to a guest that kept running while the agent was
	// away. It fails with an error matching ErrNotFound when there is none.
	Attach(ctx context.Context, cfg Config) (Guest, error)
}

// Settler is a Driver that can resolve, at agent start-up, what the log
// does not explain: an agent that died during a start, or a QEMU that died
// while no agent watched (hypervisor/qemu implements it).
type Settler interface {
	// Settle is for a domain whose log shows no live QEMU. It kills a QEMU
	// of cfg whose start did not complete and returns one whose start did
	// (for the caller to record); with none left it removes the guest's
	// run files and fails with an error matching ErrNotFound.
	Settle(ctx context.Context, cfg Config) (Guest, error)
}

// StartSpec is what Start needs.
type StartSpec struct {
	Config Config
	// ClockBase is the RTC's offset from UTC now, in seconds: the driver
	// starts QEMU with -rtc base=<UTC now + ClockBase>.
	ClockBase int64
	Paused    bool
}

// Guest is a running QEMU as a driver hands it over: its process, its
// hints and its end, and the two things every owner of a guest needs
// (re-reading its state, killing it). What else can be done to a guest is
// asked for by capability, with an interface declared where it is used and
// a type assertion: the lifecycle verbs' in domains/owner (pause, resume,
// reset, power button); a save's or migration's stream out and in, a
// dump's memory access and the device verbs' in the code that runs them
// (owner.Job.Guest hands the guest to asynchronous jobs).
type Guest interface {
	PID() int
	Accel() string
	// Status re-reads QEMU's real state: the source of truth after a hint.
	Status(ctx context.Context) (GuestStatus, error)
	// Kill ends QEMU at once (destroy).
	Kill(ctx context.Context) error
	// Events are hints from QMP; closed when the monitor goes away.
	Events() <-chan GuestEvent
	// Done is closed when QEMU has exited; Exit then says how.
	Done() <-chan struct{}
	Exit() GuestExit
	// Detach drops the monitor but leaves QEMU running (agent stop).
	Detach() error
}

// GuestStatus is QEMU's state as read through QMP.
type GuestStatus struct {
	Running bool
	Status  string    // QEMU's RunState: running, paused, shutdown, guest-panicked, ...
	RTC     time.Time // the guest's RTC now, as UTC wall time
}

// GuestExit tells how QEMU ended.
type GuestExit struct {
	Code     int
	Signaled bool
	Err      string
}

// GuestEventKind names a QMP hint.
type GuestEventKind int

const (
	GuestStop GuestEventKind = iota + 1
	GuestResume
	GuestShutdown
	GuestReset
	GuestPanicked
	GuestRTCChange
	GuestDeviceDeleted
	GuestDeviceUnplugError // DEVICE_UNPLUG_GUEST_ERROR: the guest refused
)

// GuestEvent is a typed QMP event.
type GuestEvent struct {
	Kind   GuestEventKind
	Time   time.Time
	Guest  bool   // SHUTDOWN/RESET: initiated by the guest
	Reason string // SHUTDOWN/RESET reason, panic action
	Offset int64  // RTC_CHANGE offset in seconds
	Device string // DEVICE_DELETED, DEVICE_UNPLUG_GUEST_ERROR id
	Info   string
}
