package domains

import (
	"encoding/json"
	"time"
)

// The `migrate` verb between two agents (docs/migration.md, "Between two
// agents"): the user's options, the messages the source agent sends the
// destination agent in the prepare, finish and cancel phases, and the
// port a live migration needs of the hypervisor. The state machine itself
// is migration.go.

// MigrateOptions are migrate's parameters (the source agent's).
type MigrateOptions struct {
	To string `json:"to"` // the destination agent's host
	// Listen is the IP address the destination's QEMU listens on for the
	// stream; empty: 127.0.0.1.
	Listen      string        `json:"listen,omitempty"`
	Bandwidth   int64         `json:"bandwidth,omitempty"` // bytes per second; 0: unlimited
	MaxDowntime time.Duration `json:"max_downtime,omitempty"`
	// KeepSource keeps the (shut off, no longer owned) definition on the
	// source; by default the source undefines it once confirmed.
	KeepSource bool `json:"keep_source,omitempty"`
}

// MigrationPrepare is the source's prepare request: the config QEMU runs
// (its live config, hot-plugged devices and clock adjustment included),
// the RTC adjustment the guest's clock has now, and the ownership epoch
// the source holds.
type MigrationPrepare struct {
	ID     string          `json:"id"` // the source's job ID: names this migration on both sides
	Source string          `json:"source"`
	Epoch  uint64          `json:"epoch"`
	Config json.RawMessage `json:"config"`
	RTC    int64           `json:"rtc_adjustment"`
	Listen string          `json:"listen,omitempty"`
}

// MigrationPrepared is the destination's answer: where its QEMU listens.
type MigrationPrepared struct {
	URI   string `json:"uri"`
	Epoch uint64 `json:"epoch"` // the epoch the destination's machine started from
}

// MigrationFinish carries the grant: the epoch the source handed off
// (logged on the source before it was sent).
type MigrationFinish struct {
	ID     string `json:"id"`
	Domain string `json:"domain"` // UUID
	Source string `json:"source"`
	Epoch  uint64 `json:"epoch"`
	Paused bool   `json:"paused,omitempty"` // the guest was paused on the source: it stays paused
}

// MigrationFinished is the destination's answer to finish: either the
// guest runs there (Finished), or it tore down and gives the grant back
// (Release, for exactly the granted epoch). Neither (an error, no answer)
// means the source must wait in handed-off.
type MigrationFinished struct {
	Finished bool              `json:"finished"`
	Release  *MigrationRelease `json:"release,omitempty"`
}

// MigrationCancel tells the destination to tear down before the grant.
type MigrationCancel struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Reason string `json:"reason"`
}

// MigrationProgress is one poll of a running live migration.
type MigrationProgress struct {
	Status    string // QEMU's migration status: setup, active, device, completed, ...
	Pass      uint64 // the RAM iteration (dirty-sync-count)
	Sent      uint64 // RAM bytes transferred
	Remaining uint64 // RAM bytes still to send in this pass
	Total     uint64 // guest RAM bytes
	DirtyRate uint64 // pages dirtied per second
}

// MigrationStats is what QEMU reports once a live migration completed.
type MigrationStats struct {
	MigrationProgress
	TotalTime, Downtime time.Duration
}

// LiveMigrateOptions tune an outgoing live migration (the hypervisor's
// port). Progress is called from the polling goroutine and must not block.
type LiveMigrateOptions struct {
	Bandwidth   int64
	MaxDowntime time.Duration
	Progress    func(MigrationProgress)
}

// MigrationStatus is the last migration-state a domain's log holds: the
// side's machine, and so who owns the domain (docs/migration.md).
type MigrationStatus struct {
	Role   MigrationRole  `json:"role"`
	Phase  MigrationPhase `json:"phase"`
	Peer   string         `json:"peer"`
	Epoch  uint64         `json:"epoch"`
	Reason string         `json:"reason,omitempty"`
}

// Machine is the status as a machine (for Owns, MayRun).
func (m MigrationStatus) Machine() Migration {
	return Migration{Role: m.Role, Phase: m.Phase, Peer: m.Peer, Epoch: m.Epoch}
}

// OwnershipEpoch is the domain's ownership epoch as this host knows it (0
// for a domain never migrated).
func (d Domain) OwnershipEpoch() uint64 {
	if d.Migration == nil {
		return 0
	}
	return d.Migration.Epoch
}

// OwnedHere reports whether this host may run the domain: it never took
// part in a migration of it, or its side of the last one holds ownership.
func (d Domain) OwnedHere() bool {
	return d.Migration == nil || d.Migration.Machine().Owns()
}

func foldMigrationState(d *Domain, v MigrationState, _ Event) error {
	d.Migration = &MigrationStatus{Role: MigrationRole(v.Role), Phase: MigrationPhase(v.To), Peer: v.Peer, Epoch: v.Epoch, Reason: v.Reason}
	return nil
}
