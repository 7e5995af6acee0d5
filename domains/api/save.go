package api

import (
	"context"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Save, restore and managed save verbs (docs/cli.md, docs/migrate.md).
const (
	VerbSave              = "save"
	VerbRestore           = "restore"
	VerbManagedSave       = "managedsave"
	VerbManagedSaveRemove = "managedsave-remove"
)

// SaveRequest is save's and managedsave's body (managedsave takes no path).
type SaveRequest struct {
	CommandID   string `json:"command_id,omitempty"`
	Domain      string `json:"domain"`
	Path        string `json:"path,omitempty"`        // absolute, on the agent's host, in an allowed directory
	Compression string `json:"compression,omitempty"` // zstd (default), snappy, none
	Running     bool   `json:"running,omitempty"`
	Paused      bool   `json:"paused,omitempty"`
}

// RestoreRequest is restore's body.
type RestoreRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Path      string `json:"path"`
	Running   bool   `json:"running,omitempty"`
	Paused    bool   `json:"paused,omitempty"`
}

// SaveService is what the save verbs need from owner.Service.
type SaveService interface {
	Save(ctx context.Context, cmdID, ref string, o domains.SaveOptions) (domains.Result, error)
	ManagedSave(ctx context.Context, cmdID, ref string, o domains.SaveOptions) (domains.Result, error)
	ManagedSaveRemove(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Restore(ctx context.Context, cmdID string, o domains.RestoreOptions) (domains.Result, error)
	HasManagedSave(id uuid.UUID) bool
}

// handleSave answers the save verbs; ok is false for any other verb.
func (h Handler) handleSave(ctx context.Context, verb string, body []byte) (res any, ok bool, err error) {
	switch verb {
	case VerbSave, VerbRestore, VerbManagedSave, VerbManagedSaveRemove:
	default:
		return nil, false, nil
	}
	svc, can := h.Svc.(SaveService)
	if !can {
		return nil, true, domains.Errorf(domains.CodeUnavailable, "this agent cannot %s", verb)
	}
	if verb == VerbRestore {
		var r RestoreRequest
		if err := decode(body, &r); err != nil {
			return nil, true, err
		}
		if r.Path == "" {
			return nil, true, domains.Errorf(domains.CodeInvalid, "missing \"path\"")
		}
		res, err := svc.Restore(ctx, r.CommandID, domains.RestoreOptions{Path: r.Path, Running: r.Running, Paused: r.Paused})
		return res, true, err
	}
	var r SaveRequest
	if err := decode(body, &r); err != nil {
		return nil, true, err
	}
	if r.Domain == "" {
		return nil, true, domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
	}
	o := domains.SaveOptions{Path: r.Path, Compression: r.Compression, Running: r.Running, Paused: r.Paused}
	switch verb {
	case VerbSave:
		if r.Path == "" {
			return nil, true, domains.Errorf(domains.CodeInvalid, "missing \"path\"")
		}
		res, err = svc.Save(ctx, r.CommandID, r.Domain, o)
	case VerbManagedSave:
		if r.Path != "" {
			return nil, true, domains.Errorf(domains.CodeInvalid, "managedsave takes no \"path\": the agent keeps the image")
		}
		res, err = svc.ManagedSave(ctx, r.CommandID, r.Domain, o)
	default:
		if r.Path != "" || r.Compression != "" || r.Running || r.Paused {
			return nil, true, domains.Errorf(domains.CodeInvalid, "%q takes only \"domain\"", verb)
		}
		res, err = svc.ManagedSaveRemove(ctx, r.CommandID, r.Domain)
	}
	return res, true, err
}

func (h Handler) hasManagedSave(id uuid.UUID) bool {
	svc, ok := h.Svc.(SaveService)
	return ok && svc.HasManagedSave(id)
}
