package domains

// State is a domain's lifecycle state, named as virsh shows them.
type State string

const (
	StateShutoff  State = "shut off"
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateShutdown State = "in shutdown" // the guest is shutting down; QEMU still there
	StateCrashed  State = "crashed"     // the guest panicked; QEMU still there
)

// Active reports whether a QEMU process exists for the state.
func (s State) Active() bool { return s != StateShutoff && s != "" }

type transition struct {
	from []State
	on   Type
	to   State // "" means: state unchanged
}

// transitions is THE table of legal lifecycle transitions. Commands check
// against it before acting, the projection applies it when folding, and
// docs/architecture.md prints it. Event types absent from it never change
// the state and are legal in any state of a defined domain.
var transitions = []transition{
	{from: []State{StateShutoff}, on: TypeStarted, to: StateRunning},
	{from: []State{StateRunning}, on: TypePaused, to: StatePaused},
	{from: []State{StateShutdown}, on: TypePaused, to: StateShutdown},
	{from: []State{StatePaused}, on: TypeResumed, to: StateRunning},
	{from: []State{StateShutdown}, on: TypeResumed, to: StateRunning}, // a fake reboot (reboot)
	{from: []State{StateRunning, StatePaused}, on: TypeShutdown, to: StateShutdown},
	{from: []State{StateShutdown}, on: TypeShutdown, to: StateShutdown},
	{from: []State{StateRunning, StatePaused, StateShutdown}, on: TypeCrashed, to: StateCrashed},
	{from: []State{StateRunning, StatePaused, StateShutdown, StateCrashed}, on: TypeStopped, to: StateShutoff},
	{from: []State{StateRunning, StatePaused, StateShutdown}, on: TypeReset, to: ""},
	{from: []State{StateRunning, StatePaused, StateShutdown, StateCrashed}, on: TypeRTCChanged, to: ""},
	{from: []State{StateShutoff}, on: TypeUndefined, to: ""},
	{from: []State{StateRunning}, on: TypeSaveStarted, to: ""},
	{from: []State{StatePaused}, on: TypeSaveStarted, to: ""},
	{from: []State{StateRunning, StatePaused, StateCrashed}, on: TypeDumpStarted, to: ""},
	{from: []State{StateRunning, StatePaused}, on: TypeDeviceDetachRequested, to: ""},
	{from: []State{StateShutoff}, on: TypeManagedSaveRemoved, to: ""},
}

// lifecycleTypes are the types the table governs.
func governed(t Type) bool {
	for _, tr := range transitions {
		if tr.on == t {
			return true
		}
	}
	return false
}

// Next returns the state after an event of type t in state s, and whether
// that is legal. Types the table does not govern keep the state.
func Next(s State, t Type) (State, bool) {
	if !governed(t) {
		return s, true
	}
	for _, tr := range transitions {
		if tr.on != t {
			continue
		}
		for _, f := range tr.from {
			if f == s {
				if tr.to == "" {
					return s, true
				}
				return tr.to, true
			}
		}
	}
	return s, false
}

// Transition is one row of the table, for documentation and tests.
type Transition struct {
	From State
	On   Type
	To   State
}

// Transitions lists every legal (state, event) pair.
func Transitions() []Transition {
	var out []Transition
	for _, tr := range transitions {
		for _, f := range tr.from {
			to := tr.to
			if to == "" {
				to = f
			}
			out = append(out, Transition{From: f, On: tr.on, To: to})
		}
	}
	return out
}
