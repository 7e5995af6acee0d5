package api

import (
	"context"

	"github.com/vmledger/vmledger/domains"
)

// DeviceRequest is attach-device's body (Spec) and detach-device's (ID).
type DeviceRequest struct {
	CommandID string                `json:"command_id,omitempty"`
	Domain    string                `json:"domain"`
	Spec      *domains.DeviceSpec   `json:"spec,omitempty"` // attach-device
	ID        string                `json:"id,omitempty"`   // detach-device
	Options   domains.DeviceOptions `json:"options"`
}

func (h Handler) device(ctx context.Context, verb string, body []byte) (any, error) {
	var r DeviceRequest
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	if r.Domain == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
	}
	if r.Options.Timeout < 0 {
		return nil, domains.Errorf(domains.CodeInvalid, "timeout %s: must not be negative", r.Options.Timeout)
	}
	if verb == VerbAttachDevice {
		if r.Spec == nil || r.ID != "" || r.Options.Timeout != 0 {
			return nil, domains.Errorf(domains.CodeInvalid, "attach-device takes \"spec\" (and no \"id\" or \"timeout\")")
		}
		return h.Svc.AttachDevice(ctx, r.CommandID, r.Domain, *r.Spec, r.Options)
	}
	if r.Spec != nil || r.ID == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "detach-device takes \"id\" (and no \"spec\")")
	}
	return h.Svc.DetachDevice(ctx, r.CommandID, r.Domain, r.ID, r.Options)
}
