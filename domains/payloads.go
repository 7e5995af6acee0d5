package domains

// Payload structs, one per event type. JSON tags are the wire form on NATS
// and in exports; the binary form lives in codec_payload.go.

// Defined: the domain was created with this configuration.
type Defined struct {
	Config Config `json:"config"`
}

// Undefined: the domain's definition was removed.
type Undefined struct{}

// ConfigUpdated: the persistent configuration was replaced.
type ConfigUpdated struct {
	Config Config `json:"config"`
}

// Start reasons.
const (
	StartBooted   = "booted"
	StartRestored = "restored"
	StartMigrated = "migrated"
)

// Started: QEMU runs the guest. ClockBase is the RTC base QEMU was started
// with, in seconds from UTC ("adjustment0"): RTC_CHANGE offsets are relative
// to it.
type Started struct {
	Reason    string `json:"reason"`
	Accel     string `json:"accel,omitempty"`
	PID       int    `json:"pid,omitempty"`
	ClockBase int64  `json:"clock_base"`
}

// Pause reasons.
const (
	PauseUser      = "user"
	PauseMigration = "migration"
	PauseIOError   = "io-error"
	PauseSave      = "save"
	PauseDump      = "dump"
	PauseUnknown   = "unknown"
)

// Paused: the guest's vCPUs stopped.
type Paused struct {
	Reason string `json:"reason"`
}

// Resumed: the guest's vCPUs run again.
type Resumed struct {
	Reason string `json:"reason"`
}

// Shutdown reasons.
const (
	ShutdownGuest = "guest"
	ShutdownHost  = "host"
)

// Shutdown: a shutdown happened; QEMUReason is QMP's raw reason string.
// Schema 2; schema 1 had `guest bool` instead of Reason (upcast.go).
type Shutdown struct {
	Reason     string `json:"reason"`
	QEMUReason string `json:"qemu_reason,omitempty"`
}

// Stop reasons.
const (
	StopShutdown  = "shutdown"
	StopDestroyed = "destroyed"
	StopCrashed   = "crashed"
	StopMigrated  = "migrated"
	StopSaved     = "saved"
	StopFailed    = "failed"
)

// Stopped: QEMU is gone.
type Stopped struct {
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Reset: the guest was reset, by itself or by the host.
type Reset struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason,omitempty"`
}

// Crashed: the guest reported a panic.
type Crashed struct {
	Reason string `json:"reason"` // "guest-panicked"
	Action string `json:"action,omitempty"`
	Info   string `json:"info,omitempty"`
}

// RTCChanged: the guest set its RTC. Offset is QEMU's raw RTC_CHANGE offset,
// relative to the clock base QEMU was started with; Adjustment is the new
// absolute offset from UTC (clock base + offset).
type RTCChanged struct {
	Offset     int64 `json:"offset"`
	Adjustment int64 `json:"adjustment"`
}

// DeviceAttached: a device was added: to the running QEMU (Live), to the
// persistent config (Persist), or both. Spec is the device (devices.go);
// Device is the generic device of schema 1, which had no spec and always
// went into the config.
type DeviceAttached struct {
	Device  Device      `json:"device,omitzero"`
	Live    bool        `json:"live"`
	Persist bool        `json:"persist,omitempty"`
	Spec    *DeviceSpec `json:"spec,omitempty"`
}

// DeviceDetachRequested: the guest was asked to release a device (QMP
// device_del). Persist: the persistent config dropped it at once.
type DeviceDetachRequested struct {
	ID      string `json:"id"`
	Persist bool   `json:"persist,omitempty"`
}

// DeviceDetached: the device is gone from the running QEMU (Live: QEMU
// reported DEVICE_DELETED, and what vmledger created for it was released)
// and/or from the persistent config (Persist).
type DeviceDetached struct {
	ID      string `json:"id"`
	Live    bool   `json:"live,omitempty"`
	Persist bool   `json:"persist,omitempty"`
}

// DeviceDetachFailed: the guest did not release the device: QEMU reported
// DEVICE_UNPLUG_GUEST_ERROR, or the user's timeout passed. It stays.
type DeviceDetachFailed struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// TransferStarted is the payload of save-, restore- and dump-started.
type TransferStarted struct {
	Kind   Type   `json:"-"`
	Path   string `json:"path,omitempty"`
	Format string `json:"format,omitempty"`
}

// TransferCompleted is the payload of save-, restore- and dump-completed.
type TransferCompleted struct {
	Kind   Type   `json:"-"`
	Path   string `json:"path,omitempty"`
	Bytes  uint64 `json:"bytes"`
	Digest string `json:"digest,omitempty"`
}

// TransferFailed is the payload of save-, restore- and dump-failed.
type TransferFailed struct {
	Kind  Type   `json:"-"`
	Path  string `json:"path,omitempty"`
	Error string `json:"error"`
}

// MigrationState: the migration state machine moved.
type MigrationState struct {
	Role   string `json:"role"` // source | destination
	From   string `json:"from"`
	To     string `json:"to"`
	Peer   string `json:"peer,omitempty"`
	Reason string `json:"reason,omitempty"` // the error that forced a recovery transition
	Epoch  uint64 `json:"epoch,omitempty"`  // ownership epoch (fencing token) after the transition; schema 2
}

// MigrationIteration: one RAM pass finished.
type MigrationIteration struct {
	Pass      uint64 `json:"pass"`
	Remaining uint64 `json:"remaining"`
	Sent      uint64 `json:"sent"`
}

func (Defined) EventType() Type               { return TypeDefined }
func (Undefined) EventType() Type             { return TypeUndefined }
func (ConfigUpdated) EventType() Type         { return TypeConfigUpdated }
func (Started) EventType() Type               { return TypeStarted }
func (Paused) EventType() Type                { return TypePaused }
func (Resumed) EventType() Type               { return TypeResumed }
func (Shutdown) EventType() Type              { return TypeShutdown }
func (Stopped) EventType() Type               { return TypeStopped }
func (Reset) EventType() Type                 { return TypeReset }
func (Crashed) EventType() Type               { return TypeCrashed }
func (RTCChanged) EventType() Type            { return TypeRTCChanged }
func (DeviceAttached) EventType() Type        { return TypeDeviceAttached }
func (DeviceDetachRequested) EventType() Type { return TypeDeviceDetachRequested }
func (DeviceDetached) EventType() Type        { return TypeDeviceDetached }
func (DeviceDetachFailed) EventType() Type    { return TypeDeviceDetachFailed }
func (p TransferStarted) EventType() Type     { return p.Kind }
func (p TransferCompleted) EventType() Type   { return p.Kind }
func (p TransferFailed) EventType() Type      { return p.Kind }
func (MigrationState) EventType() Type        { return TypeMigrationState }
func (MigrationIteration) EventType() Type    { return TypeMigrationIteration }

// ManagedSaveRemoved: the domain's managed save image at Path was
// discarded; Reason is ManagedSaveRemovedByUser or ManagedSaveDiscarded.
type ManagedSaveRemoved struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Why a managed save image was discarded.
const (
	ManagedSaveRemovedByUser = "removed"    // managedsave-remove
	ManagedSaveDiscarded     = "force-boot" // start --force-boot
)

func (ManagedSaveRemoved) EventType() Type { return TypeManagedSaveRemoved }
