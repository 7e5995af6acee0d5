package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// Live migration verbs (docs/migration.md, "Between two agents"). migrate
// is the user's, sent to the source agent; migrate-prepare, -finish and
// -cancel are what the source agent sends the destination agent
// (PeerVerbs).
const (
	VerbMigrate        = "migrate"
	VerbMigratePrepare = "migrate-prepare"
	VerbMigrateFinish  = "migrate-finish"
	VerbMigrateCancel  = "migrate-cancel"
)

// PeerVerbs are the verbs only agents send each other, on
// vmledger.peer.<host>.<verb> (bus.PeerSubject, bus.CommandOptions.PeerVerbs):
// the NATS server refuses them from every other identity.
func PeerVerbs() []string {
	return []string{VerbMigratePrepare, VerbMigrateFinish, VerbMigrateCancel}
}

// MigrateRequest is migrate's body; the reply is the job-started Result.
type MigrateRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Domain    string `json:"domain"`
	To        string `json:"to"`
	Listen    string `json:"listen,omitempty"`
	Bandwidth int64  `json:"bandwidth,omitempty"` // bytes per second
	// MaxDowntimeMs is the pause QEMU may take at the end (0: 300 ms).
	MaxDowntimeMs int64 `json:"max_downtime_ms,omitempty"`
	KeepSource    bool  `json:"keep_source,omitempty"`
}

// MigrateService is what the migration verbs need from owner.Service.
type MigrateService interface {
	Migrate(ctx context.Context, cmdID, ref string, o domains.MigrateOptions) (domains.Result, error)
	MigrationPrepare(ctx context.Context, req domains.MigrationPrepare) (domains.MigrationPrepared, error)
	MigrationFinish(ctx context.Context, req domains.MigrationFinish) (domains.MigrationFinished, error)
	MigrationCancel(ctx context.Context, req domains.MigrationCancel) error
}

// handleMigrate answers the migration verbs; ok is false for any other.
func (h Handler) handleMigrate(ctx context.Context, verb string, body []byte) (res any, ok bool, err error) {
	switch verb {
	case VerbMigrate, VerbMigratePrepare, VerbMigrateFinish, VerbMigrateCancel:
	default:
		return nil, false, nil
	}
	svc, can := h.Svc.(MigrateService)
	if !can {
		return nil, true, domains.Errorf(domains.CodeUnavailable, "this agent cannot migrate")
	}
	switch verb {
	case VerbMigrate:
		var r MigrateRequest
		if err := decode(body, &r); err != nil {
			return nil, true, err
		}
		if r.Domain == "" || r.To == "" {
			return nil, true, domains.Errorf(domains.CodeInvalid, "migrate needs \"domain\" and \"to\"")
		}
		res, err = svc.Migrate(ctx, r.CommandID, r.Domain, domains.MigrateOptions{To: r.To, Listen: r.Listen, Bandwidth: r.Bandwidth,
			MaxDowntime: time.Duration(r.MaxDowntimeMs) * time.Millisecond, KeepSource: r.KeepSource})
	case VerbMigratePrepare:
		var r domains.MigrationPrepare
		if err := decodeWire(body, &r); err != nil {
			return nil, true, err
		}
		res, err = svc.MigrationPrepare(ctx, r)
	case VerbMigrateFinish:
		var r domains.MigrationFinish
		if err := decodeWire(body, &r); err != nil {
			return nil, true, err
		}
		res, err = svc.MigrationFinish(ctx, r)
	default:
		var r domains.MigrationCancel
		if err := decodeWire(body, &r); err != nil {
			return nil, true, err
		}
		err = svc.MigrationCancel(ctx, r)
		res = struct{}{}
	}
	return res, true, err
}

// decodeWire is decode for an agent-to-agent message, which must not be
// empty.
func decodeWire(body []byte, v any) error {
	if !json.Valid(body) || len(body) == 0 {
		return domains.Errorf(domains.CodeInvalid, "malformed request: want a JSON object")
	}
	return decode(body, v)
}
