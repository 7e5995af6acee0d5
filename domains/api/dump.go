package api

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// VerbDump writes a core dump of a domain (virsh dump); an asynchronous
// job.
const VerbDump = "dump"

// DumpRequest is dump's body; the reply is the job-started Result
// (Result.Job is the job's ID).
type DumpRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Domain    string `json:"domain"`
	Path      string `json:"path"`
	Format    string `json:"format"`
	Flattened bool   `json:"flattened,omitempty"`
	ViaQEMU   bool   `json:"via_qemu,omitempty"`
	After     string `json:"after,omitempty"` // "" | live | crash | reset
}

// DumpService is the service's dump (owner.Service has it); a Service
// without it answers unavailable.
type DumpService interface {
	Dump(ctx context.Context, cmdID, ref string, o domains.DumpOptions) (domains.Result, error)
}

func (h Handler) dump(ctx context.Context, body []byte) (any, error) {
	var r DumpRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	if r.Domain == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
	}
	d, ok := h.Svc.(DumpService)
	if !ok {
		return nil, domains.Errorf(domains.CodeUnavailable, "dump is not available")
	}
	return d.Dump(ctx, r.CommandID, r.Domain, domains.DumpOptions{Path: r.Path, Format: r.Format,
		Flattened: r.Flattened, ViaQEMU: r.ViaQEMU, After: r.After})
}
