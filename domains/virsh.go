package domains

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// What the virsh habits (docs/cli.md, "virsh verbs") add to the model:
// autostart, the taint a raw monitor command leaves, the fake reboot's
// way back to running, and the states a list may filter on.

// Event types of the virsh verbs.
const (
	// TypeAutostartSet: `autostart` changed whether the agent starts the
	// domain when it starts.
	TypeAutostartSet Type = "autostart-set"
	// TypeMonitorCommand: a raw QMP command was sent to the domain's QEMU
	// (qemu-monitor-command); the running domain is tainted from then on.
	TypeMonitorCommand Type = "qemu-monitor-command"
)

// Reboot reasons: the reset and the resumed of a fake reboot (the guest
// powered off on ACPI and the agent reset it instead of stopping it).
const (
	ResetReboot   = "reboot"
	ResumedReboot = "rebooted"
)

// TaintCustomMonitor is libvirt's name for the taint a raw monitor command
// leaves (VIR_DOMAIN_TAINT_CUSTOM_MONITOR).
const TaintCustomMonitor = "custom-monitor"

// AutostartSet is autostart-set's payload.
type AutostartSet struct {
	Enabled bool `json:"enabled"`
}

// MonitorCommand is qemu-monitor-command's payload. The arguments are
// recorded by length and digest only: they may carry secrets (object-add
// of a secret), and the log is durable and published on NATS.
type MonitorCommand struct {
	Execute    string `json:"execute"`
	ArgsBytes  uint64 `json:"args_bytes,omitempty"`
	ArgsDigest string `json:"args_digest,omitempty"` // sha256:<hex> of the arguments' JSON
	Error      string `json:"error,omitempty"`       // QEMU's error reply, if any
}

func (AutostartSet) EventType() Type   { return TypeAutostartSet }
func (MonitorCommand) EventType() Type { return TypeMonitorCommand }

var autostartRow = row(TypeAutostartSet, 1, zero[AutostartSet],
	func(w *writer, v AutostartSet) error { w.bool(v.Enabled); return nil },
	func(r *reader, _ Type) (AutostartSet, error) { return AutostartSet{Enabled: r.bool()}, nil },
	func(d *Domain, v AutostartSet, _ Event) error { d.Autostart = v.Enabled; return nil })

var monitorCommandRow = row(TypeMonitorCommand, 1, zero[MonitorCommand],
	func(w *writer, v MonitorCommand) error {
		w.str(v.Execute)
		w.uvarint(v.ArgsBytes)
		w.str(v.ArgsDigest)
		w.str(v.Error)
		return nil
	},
	func(r *reader, _ Type) (MonitorCommand, error) {
		return MonitorCommand{Execute: r.str(), ArgsBytes: r.uvarint(), ArgsDigest: r.str(), Error: r.str()}, nil
	},
	func(d *Domain, _ MonitorCommand, _ Event) error {
		// The taint belongs to the QEMU it was sent to: a new start is clean.
		if d.Live != nil && !d.Live.tainted(TaintCustomMonitor) {
			d.Live.Taints = append(slices.Clone(d.Live.Taints), TaintCustomMonitor)
		}
		return nil
	})

func (l *Live) tainted(t string) bool { return slices.Contains(l.Taints, t) }

// States lists every lifecycle state, as list --state takes them.
func States() []State {
	return []State{StateRunning, StatePaused, StateShutdown, StateCrashed, StateShutoff}
}

// ParseState checks a state name given by a user (list --state).
func ParseState(s string) (State, error) {
	names := make([]string, 0, 5)
	for _, st := range States() {
		if string(st) == s {
			return st, nil
		}
		names = append(names, fmt.Sprintf("%q", st))
	}
	return "", Errorf(CodeInvalid, "state %s: must be one of %s", Quote(s), strings.Join(names, ", "))
}

// Job kinds of the virsh verbs (synchronous).
const (
	JobReboot         JobKind = "reboot"
	JobAutostart      JobKind = "autostart"
	JobMonitorCommand JobKind = "qemu-monitor-command"
)

// VCPU is one virtual CPU as vcpuinfo shows it: QEMU's query-cpus-fast,
// with the host thread's scheduling facts from /proc.
type VCPU struct {
	Index   int     `json:"vcpu"`
	Thread  int     `json:"thread_id"`
	QOMPath string  `json:"qom_path,omitempty"`
	Socket  int     `json:"socket"`
	Core    int     `json:"core"`
	HostCPU int     `json:"host_cpu"`         // the host CPU the thread last ran on
	State   string  `json:"state"`            // the thread's: running, sleeping, ...
	CPUTime float64 `json:"cpu_time_seconds"` // user + system time of the thread
}

// MaxMonitorCommand bounds a raw QMP command (qemu-monitor-command).
const MaxMonitorCommand = 16 << 10

// refusedMonitor says why qemu-monitor-command refuses a QMP command:
// each would change what the log says of the guest without an event (its
// devices, whether QEMU runs, what it does on power-off or panic, the
// migration and dump jobs), or would get around this list.
func refusedMonitor(execute string) (string, bool) {
	switch execute {
	case "quit":
		return "use destroy or shutdown", true
	case "system_reset":
		return "use reset", true
	case "system_powerdown":
		return "use shutdown", true
	case "device_add", "blockdev-add", "netdev_add", "object-add":
		return "use attach-device", true
	case "device_del", "blockdev-del", "netdev_del", "object-del":
		return "use detach-device", true
	case "chardev-add", "chardev-remove", "chardev-change":
		return "the agent owns the character devices", true
	case "set-action":
		return "the agent sets QEMU's actions (on_crash, reboot)", true
	case "migrate", "migrate-incoming", "migrate-continue", "migrate-pause", "migrate-recover":
		return "migration and save are jobs of the agent", true
	case "migrate_cancel":
		return "use job abort", true
	case "dump-guest-memory":
		return "use dump --via-qemu", true
	case "getfd", "closefd", "add-fd", "remove-fd":
		return "file descriptors cannot be passed over the bus", true
	case "human-monitor-command":
		return "HMP would get around this list", true
	case "transaction":
		return "it would get around this list", true
	case "qmp_capabilities":
		return "the agent negotiated capabilities already", true
	}
	return "", false
}

// monitorRequest is the raw command, parsed as QMP's own wire form.
type monitorRequest struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// ParseMonitorCommand checks a raw QMP command: one JSON object with
// "execute" and optional "arguments" (an object), at most
// MaxMonitorCommand bytes, not among the refused commands.
func ParseMonitorCommand(raw []byte) (execute string, args json.RawMessage, err error) {
	if len(raw) > MaxMonitorCommand {
		return "", nil, Errorf(CodeInvalid, "monitor command: %d bytes, at most %d", len(raw), MaxMonitorCommand)
	}
	var r monitorRequest
	if err := DecodeStrict(raw, &r); err != nil {
		return "", nil, Errorf(CodeInvalid, "monitor command: want {\"execute\": NAME, \"arguments\": {...}}: %w", err)
	}
	if r.Execute == "" || len(r.Execute) > 64 {
		return "", nil, Errorf(CodeInvalid, "monitor command: \"execute\" must name a QMP command (at most 64 bytes)")
	}
	if len(r.Arguments) > 0 && (r.Arguments[0] != '{' || string(r.Arguments) == "null") {
		return "", nil, Errorf(CodeInvalid, "monitor command %s: \"arguments\" must be an object", Quote(r.Execute))
	}
	if why, ok := refusedMonitor(r.Execute); ok {
		return "", nil, Errorf(CodeInvalid, "monitor command %s is refused: %s (docs/cli.md, \"qemu-monitor-command\")", Quote(r.Execute), why)
	}
	return r.Execute, r.Arguments, nil
}

// MonitorReply is qemu-monitor-command's answer: QEMU's "return" (absent
// on a retry with the same command ID: QEMU's reply is not kept) and the
// recorded event.
type MonitorReply struct {
	Result
	Return json.RawMessage `json:"return,omitempty"`
	Error  string          `json:"error,omitempty"` // QEMU's error reply
}
