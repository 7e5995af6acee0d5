package domains

import (
	"errors"
	"fmt"
)

// Live migration as an explicit state machine, in the manner of VFIO
// migration v2 (seed 004): named states, one table of legal transitions,
// a recovery state for every transition that can fail, and every
// transition logged as a migration-state event carrying the error that
// caused it. The phases follow libvirt's v3 protocol (begin, prepare,
// perform, finish, confirm). docs/migration.md prints the table and the
// argument that both hosts can never run the guest at once.

// MigrationRole is which side of a migration a machine describes.
type MigrationRole string

const (
	RoleSource      MigrationRole = "source"
	RoleDestination MigrationRole = "destination"
)

// MigrationPhase is a state of one side's migration machine. The strings
// are logged (migration-state from/to) and are part of the API.
type MigrationPhase string

const (
	MigIdle MigrationPhase = "idle" // no migration; the initial state of both sides

	// Source side.
	MigBegun      MigrationPhase = "begun"      // begin: guest checked running and owned; config sent
	MigPerforming MigrationPhase = "performing" // perform: QEMU streams to the destination; guest still runs here
	MigHandedOff  MigrationPhase = "handed-off" // QEMU completed, guest paused here, ownership granted to the destination
	MigConfirmed  MigrationPhase = "confirmed"  // confirm: destination finished; source QEMU stopped (migrated)
	MigCancelled  MigrationPhase = "cancelled"  // recovery: the guest runs on the source as before

	// Destination side.
	MigPreparing MigrationPhase = "preparing" // prepare: QEMU starting with -incoming on a fresh all-zero RAM file
	MigPrepared  MigrationPhase = "prepared"  // QEMU listens on the migration port
	MigFinishing MigrationPhase = "finishing" // finish: ownership received; checking the stream completed
	MigFinished  MigrationPhase = "finished"  // guest resumed here (started migrated); this host owns it
	MigTornDown  MigrationPhase = "torn-down" // recovery: destination QEMU gone, definition dropped, ownership released

	// Either side: the recovery itself failed; the operator must look.
	MigError MigrationPhase = "error"
)

// migrationTransition is one row of the table. A recovery row is taken
// only with the error that forced it; a step row only without one.
type migrationTransition struct {
	role     MigrationRole
	from     []MigrationPhase
	to       MigrationPhase
	recovery bool
}

// migrationTransitions is THE table of legal migration transitions.
// Nothing else moves a machine: Step refuses every pair not listed here.
var migrationTransitions = []migrationTransition{
	{RoleSource, []MigrationPhase{MigIdle}, MigBegun, false},
	{RoleSource, []MigrationPhase{MigBegun}, MigPerforming, false},
	{RoleSource, []MigrationPhase{MigPerforming}, MigHandedOff, false},
	{RoleSource, []MigrationPhase{MigHandedOff}, MigConfirmed, false},
	// Recovery before the hand-off: cancel QEMU's migration, resume the guest.
	{RoleSource, []MigrationPhase{MigBegun, MigPerforming}, MigCancelled, true},
	// Recovery after the hand-off: only with the destination's release
	// (a *MigrationRelease cause); see Step.
	{RoleSource, []MigrationPhase{MigHandedOff}, MigCancelled, true},
	{RoleSource, []MigrationPhase{MigPerforming, MigHandedOff}, MigError, true},

	{RoleDestination, []MigrationPhase{MigIdle}, MigPreparing, false},
	{RoleDestination, []MigrationPhase{MigPreparing}, MigPrepared, false},
	{RoleDestination, []MigrationPhase{MigPrepared}, MigFinishing, false},
	{RoleDestination, []MigrationPhase{MigFinishing}, MigFinished, false},
	{RoleDestination, []MigrationPhase{MigPreparing, MigPrepared, MigFinishing}, MigTornDown, true},
	{RoleDestination, []MigrationPhase{MigPreparing, MigPrepared, MigFinishing}, MigError, true},
}

// MigrationRow is one (role, from, to) pair of the table, for docs and tests.
type MigrationRow struct {
	Role     MigrationRole
	From, To MigrationPhase
	Recovery bool
}

// MigrationTable lists every legal transition.
func MigrationTable() []MigrationRow {
	var out []MigrationRow
	for _, tr := range migrationTransitions {
		for _, f := range tr.from {
			out = append(out, MigrationRow{Role: tr.role, From: f, To: tr.to, Recovery: tr.recovery})
		}
	}
	return out
}

// MigrationPhases lists every phase, in table order.
func MigrationPhases() []MigrationPhase {
	return []MigrationPhase{MigIdle, MigBegun, MigPerforming, MigHandedOff, MigConfirmed, MigCancelled,
		MigPreparing, MigPrepared, MigFinishing, MigFinished, MigTornDown, MigError}
}

func lookupMigration(role MigrationRole, from, to MigrationPhase) (migrationTransition, bool) {
	for _, tr := range migrationTransitions {
		if tr.role != role || tr.to != to {
			continue
		}
		for _, f := range tr.from {
			if f == from {
				return tr, true
			}
		}
	}
	return migrationTransition{}, false
}

// Terminal reports whether a phase ends the migration on its side.
func (p MigrationPhase) Terminal() bool {
	switch p {
	case MigConfirmed, MigCancelled, MigFinished, MigTornDown, MigError:
		return true
	}
	return false
}

// MayRun reports whether a side in this phase may let the guest's vCPUs
// run. The source may until it hands off (and again once the destination
// released ownership back: cancelled); the destination only once it has
// finished. Every resume a migration does checks it.
func (m Migration) MayRun() bool {
	if m.Role == RoleSource {
		switch m.Phase {
		case MigIdle, MigBegun, MigPerforming, MigCancelled:
			return true
		}
		return false
	}
	return m.Phase == MigFinished
}

// Owns reports whether the side holds the domain's ownership (the right
// to run, define or start it) in this phase.
func (m Migration) Owns() bool {
	if m.Role == RoleSource {
		return m.Phase != MigHandedOff && m.Phase != MigConfirmed
	}
	return m.Phase == MigFinishing || m.Phase == MigFinished
}

// Migration is one side's machine. Epoch is the ownership epoch (the
// fencing token): the source's at begin, the one granted to the
// destination from the hand-off on.
type Migration struct {
	Role  MigrationRole
	Phase MigrationPhase
	Peer  string // the other host
	Epoch uint64
}

// NewMigration is a machine in idle. epoch is the domain's current
// ownership epoch as this host knows it.
func NewMigration(role MigrationRole, peer string, epoch uint64) (Migration, error) {
	if role != RoleSource && role != RoleDestination {
		return Migration{}, Errorf(CodeInvalid, "migration role %s: must be source or destination", Quote(string(role)))
	}
	if peer == "" || len(peer) > MaxQuoted {
		// The bus checks the host's form; here only that there is one.
		return Migration{}, Errorf(CodeInvalid, "migration peer %s: must be a host name of 1-%d bytes", Quote(peer), MaxQuoted)
	}
	return Migration{Role: role, Phase: MigIdle, Peer: peer, Epoch: epoch}, nil
}

// MigrationRelease is the cause the source needs to recover after the
// hand-off: the destination's word that it tore its side down and gives
// back the ownership it was granted at Epoch.
type MigrationRelease struct {
	Host   string
	Epoch  uint64
	Reason string
}

func (r *MigrationRelease) Error() string {
	return fmt.Sprintf("destination %s released ownership epoch %d: %s", r.Host, r.Epoch, r.Reason)
}

// MaxMigrationReason bounds the error text a migration-state event keeps.
const MaxMigrationReason = 1024

// Step moves the machine to phase to. A recovery transition needs the
// error that caused it (kept, bounded, in the event's reason); a step
// needs none. Illegal transitions are refused with CodeConflict and change
// nothing. The returned payload is what the caller appends to the log
// before acting on the new phase.
func (m Migration) Step(to MigrationPhase, cause error) (Migration, MigrationState, error) {
	tr, ok := lookupMigration(m.Role, m.Phase, to)
	if !ok {
		return m, MigrationState{}, Errorf(CodeConflict, "migration %s: %s → %s is not a legal transition", m.Role, m.Phase, to)
	}
	if tr.recovery && cause == nil {
		return m, MigrationState{}, Errorf(CodeInvalid, "migration %s: %s → %s is a recovery and needs the error that caused it", m.Role, m.Phase, to)
	}
	if !tr.recovery && cause != nil {
		return m, MigrationState{}, Errorf(CodeInvalid, "migration %s: %s → %s is a step, not a recovery (cause: %s)", m.Role, m.Phase, to, prefix(cause.Error(), MaxQuoted))
	}
	next := m
	next.Phase = to
	switch {
	case m.Role == RoleSource && m.Phase == MigHandedOff && to == MigCancelled:
		// The source gave its right to run the guest away at the hand-off;
		// only the destination can give it back, for the epoch it received.
		var rel *MigrationRelease
		if !errors.As(cause, &rel) || rel.Host != m.Peer || rel.Epoch != m.Epoch {
			return m, MigrationState{}, Errorf(CodeConflict,
				"migration source: handed-off → cancelled needs the release of epoch %d by %s, got: %s", m.Epoch, m.Peer, prefix(cause.Error(), MaxQuoted))
		}
		next.Epoch = m.Epoch + 1
	case m.Role == RoleSource && to == MigHandedOff:
		next.Epoch = m.Epoch + 1 // the epoch granted to the destination
	}
	ev := MigrationState{Role: string(m.Role), From: string(m.Phase), To: string(to), Peer: m.Peer, Epoch: next.Epoch}
	if cause != nil {
		ev.Reason = prefix(cause.Error(), MaxMigrationReason)
	}
	return next, ev, nil
}

// Receive is the destination's prepared → finishing on the source's grant:
// it takes the epoch the source handed off, which must be newer than any
// this host has seen for the domain (a stale or replayed grant is refused).
func (m Migration) Receive(from string, epoch uint64) (Migration, MigrationState, error) {
	if m.Role != RoleDestination {
		return m, MigrationState{}, Errorf(CodeConflict, "migration %s: only a destination receives ownership", m.Role)
	}
	if from != m.Peer || epoch <= m.Epoch {
		return m, MigrationState{}, Errorf(CodeConflict, "migration destination: grant of epoch %d from %s refused (peer %s, epoch seen %d)", epoch, Quote(from), m.Peer, m.Epoch)
	}
	next, ev, err := m.Step(MigFinishing, nil)
	if err != nil {
		return m, MigrationState{}, err
	}
	next.Epoch, ev.Epoch = epoch, epoch
	return next, ev, nil
}

// Release is what a destination that tore down after receiving the grant
// sends back, so the source may resume. Before the grant there is nothing
// to give back, and a destination that finished owns the guest: both nil.
func (m Migration) Release(host, reason string) *MigrationRelease {
	if m.Role != RoleDestination || m.Phase != MigTornDown {
		return nil
	}
	return &MigrationRelease{Host: host, Epoch: m.Epoch, Reason: prefix(reason, MaxMigrationReason)}
}

// ResumeMigration rebuilds a side's machine from the last migration-state
// event it logged, as an agent does when it restarts in the middle of one.
func ResumeMigration(ev MigrationState) (Migration, error) {
	m := Migration{Role: MigrationRole(ev.Role), Phase: MigrationPhase(ev.To), Peer: ev.Peer, Epoch: ev.Epoch}
	if m.Role != RoleSource && m.Role != RoleDestination {
		return Migration{}, Errorf(CodeInvalid, "migration-state role %s: must be source or destination", Quote(ev.Role))
	}
	for _, r := range MigrationTable() {
		if r.Role == m.Role && r.To == m.Phase {
			return m, nil
		}
	}
	return Migration{}, Errorf(CodeInvalid, "migration-state: %s is not a %s phase", Quote(ev.To), m.Role)
}
