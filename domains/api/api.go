// Package api is the wire form of vmledger's commands: the JSON bodies on
// vmledger.cmd.<host>.<verb> and the handler that maps each verb onto the
// domains service. It is pure: no NATS, no store.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Verbs the agent answers on vmledger.cmd.<host>.<verb>.
const (
	VerbDefine   = "define"
	VerbUndefine = "undefine"
	VerbList     = "list"
	VerbInfo     = "info"
	VerbConfig   = "config"
	VerbStart    = "start"
	VerbShutdown = "shutdown"
	VerbDestroy  = "destroy"
	VerbSuspend  = "suspend"
	VerbResume   = "resume"
	VerbReset    = "reset"
	// VerbJobInfo shows a domain's running job (virsh domjobinfo);
	// VerbJobAbort aborts its asynchronous job (virsh domjobabort).
	VerbJobInfo  = "job-info"
	VerbJobAbort = "job-abort"
	// Device hotplug (virsh attach-device, detach-device): devices.go.
	VerbAttachDevice = "attach-device"
	VerbDetachDevice = "detach-device"
)

// Verbs lists every verb sent on the command subjects; PeerVerbs (only
// agents send them) are not among them.
func Verbs() []string {
	return []string{VerbDefine, VerbUndefine, VerbList, VerbInfo, VerbConfig, VerbStart,
		VerbShutdown, VerbDestroy, VerbSuspend, VerbResume, VerbReset, VerbJobInfo, VerbJobAbort,
		VerbSave, VerbRestore, VerbManagedSave, VerbManagedSaveRemove,
		VerbAttachDevice, VerbDetachDevice, VerbDump,
		VerbMigrate,
		VerbReboot, VerbAutostart, VerbMonitorCommand, VerbVCPUInfo, VerbDomTime}
}

// DefineRequest carries a domain configuration.
type DefineRequest struct {
	CommandID string         `json:"command_id,omitempty"`
	Config    domains.Config `json:"config"`
}

// DomainRequest names one domain; the verb says what to do with it.
type DomainRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Domain    string `json:"domain"`           // name or UUID
	Paused    bool   `json:"paused,omitempty"` // start only
	// ForceBoot (start only) discards a managed save image and boots.
	ForceBoot bool `json:"force_boot,omitempty"`
	// At (info and config only) asks for the domain as it stood at a point
	// of the log: a decimal sequence or an RFC 3339 time (docs/replay.md).
	At string `json:"at,omitempty"`
	// Live (config only) asks for the running QEMU's config, with the
	// devices attached and detached live.
	Live bool `json:"live,omitempty"`
}

// ListRequest filters list.
type ListRequest struct {
	State string `json:"state,omitempty"` // e.g. "running"; empty: all
}

// Summary is one row of list.
type Summary struct {
	UUID    string        `json:"uuid"`
	Name    string        `json:"name"`
	State   domains.State `json:"state"`
	Reason  string        `json:"reason,omitempty"`
	Version uint64        `json:"version"`
	// ManagedSave: the domain has a managed save image; start restores it.
	ManagedSave bool `json:"managed_save,omitempty"`
}

// JobReply is job-info's answer: the running job, null when none.
type JobReply struct {
	Job *domains.JobInfo `json:"job"`
}

// ListReply is list's answer.
type ListReply struct {
	Domains []Summary `json:"domains"`
	LastSeq uint64    `json:"last_seq"`
}

// Service is what the handler needs from owner.Service.
type Service interface {
	Define(ctx context.Context, cmdID string, cfg domains.Config) (domains.Result, error)
	Undefine(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Start(ctx context.Context, cmdID, ref string, o domains.StartOptions) (domains.Result, error)
	Shutdown(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Destroy(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Suspend(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Resume(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Reset(ctx context.Context, cmdID, ref string) (domains.Result, error)
	AttachDevice(ctx context.Context, cmdID, ref string, spec domains.DeviceSpec, o domains.DeviceOptions) (domains.Result, error)
	DetachDevice(ctx context.Context, cmdID, ref, id string, o domains.DeviceOptions) (domains.Result, error)
	JobInfo(ref string) (*domains.JobInfo, error)
	AbortJob(ctx context.Context, ref string) (domains.JobInfo, error)
	List() []domains.Domain
	Get(ref string) (domains.Domain, error)
	LastSeq() uint64
}

// Log is the read side of the event log that point-in-time requests
// (DomainRequest.At) fold; store.Store satisfies it.
type Log interface {
	ReadDomain(ctx context.Context, id uuid.UUID, afterVersion uint64, limit int) ([]domains.Event, error)
}

// Handler maps verbs to the service. It satisfies bus.Handler.
type Handler struct {
	Svc Service
	// Log, if set, answers info and config with At; without it they
	// fail as unavailable.
	Log Log
	// CheckEvent, if set, vets the event a define would append before the
	// service acts, so a config too large for the bus is refused as
	// invalid (the agent's log guard, the backstop, runs under the
	// service, which reports its refusals as append failures).
	CheckEvent func(domains.Event) error
}

// Handle decodes body for verb, strictly, and runs it.
func (h Handler) Handle(ctx context.Context, verb string, body []byte) (any, error) {
	if res, ok, err := h.handleSave(ctx, verb, body); ok {
		return res, err
	}
	if res, ok, err := h.handleMigrate(ctx, verb, body); ok {
		return res, err
	}
	if res, ok, err := h.handleVirsh(ctx, verb, body); ok {
		return res, err
	}
	switch verb {
	case VerbDefine:
		r, err := decodeDefine(body)
		if err != nil {
			return nil, err
		}
		if h.CheckEvent != nil {
			// config-updated: the longer of the two types a define appends.
			probe := domains.NewEvent(r.Config.UUID, time.Now(), r.CommandID, "", domains.ConfigUpdated{Config: r.Config})
			if err := h.CheckEvent(probe); err != nil {
				return nil, err
			}
		}
		return h.Svc.Define(ctx, r.CommandID, r.Config)
	case VerbDump:
		return h.dump(ctx, body)
	case VerbList:
		var r ListRequest
		if err := decode(body, &r); err != nil {
			return nil, err
		}
		if r.State != "" {
			if _, err := domains.ParseState(r.State); err != nil {
				return nil, err
			}
		}
		return h.list(r), nil
	case VerbAttachDevice, VerbDetachDevice:
		return h.device(ctx, verb, body)
	case VerbInfo, VerbConfig:
		var r DomainRequest
		if err := decodeRef(body, &r); err != nil {
			return nil, err
		}
		var d domains.Domain
		var err error
		if r.At != "" {
			d, err = h.asOf(ctx, r.Domain, r.At)
		} else {
			d, err = h.Svc.Get(r.Domain)
		}
		if err != nil {
			return nil, err
		}
		if verb == VerbConfig && r.Live {
			return d.LiveConfig(), nil
		}
		if verb == VerbConfig {
			return d.Config, nil
		}
		return d, nil
	}
	var r DomainRequest
	if err := decodeRef(body, &r); err != nil {
		return nil, err
	}
	switch verb {
	case VerbJobInfo, VerbJobAbort:
		if r.Paused || r.ForceBoot || r.At != "" || r.CommandID != "" {
			return nil, domains.Errorf(domains.CodeInvalid, "%q takes only \"domain\"", verb)
		}
		if verb == VerbJobAbort {
			return h.Svc.AbortJob(ctx, r.Domain)
		}
		j, err := h.Svc.JobInfo(r.Domain)
		if err != nil {
			return nil, err
		}
		return JobReply{Job: j}, nil
	}
	if r.Live {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes no \"live\": only config does", verb)
	}
	if (r.Paused || r.ForceBoot) && verb != VerbStart {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes no paused or force_boot flag", verb)
	}
	if r.At != "" {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes no \"at\": only info and config look back", verb)
	}
	switch verb {
	case VerbUndefine:
		return h.Svc.Undefine(ctx, r.CommandID, r.Domain)
	case VerbStart:
		return h.Svc.Start(ctx, r.CommandID, r.Domain, domains.StartOptions{Paused: r.Paused, ForceBoot: r.ForceBoot})
	case VerbShutdown:
		return h.Svc.Shutdown(ctx, r.CommandID, r.Domain)
	case VerbDestroy:
		return h.Svc.Destroy(ctx, r.CommandID, r.Domain)
	case VerbSuspend:
		return h.Svc.Suspend(ctx, r.CommandID, r.Domain)
	case VerbResume:
		return h.Svc.Resume(ctx, r.CommandID, r.Domain)
	case VerbReset:
		return h.Svc.Reset(ctx, r.CommandID, r.Domain)
	}
	return nil, domains.Errorf(domains.CodeInvalid, "unknown verb %s", domains.Quote(verb))
}

func decodeRef(body []byte, r *DomainRequest) error {
	if err := decode(body, r); err != nil {
		return err
	}
	if r.Domain == "" {
		return domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
	}
	return nil
}

// defineWire is DefineRequest as received: the config is decoded on its
// own by domains.DecodeConfig, which also refuses an explicit zero UUID.
type defineWire struct {
	CommandID string          `json:"command_id,omitempty"`
	Config    json.RawMessage `json:"config"`
}

func decodeDefine(body []byte) (DefineRequest, error) {
	var w defineWire
	if err := decode(body, &w); err != nil {
		return DefineRequest{}, err
	}
	if len(w.Config) == 0 || string(w.Config) == "null" {
		return DefineRequest{}, domains.Errorf(domains.CodeInvalid, "missing \"config\"")
	}
	cfg, err := domains.DecodeConfig(w.Config)
	if err != nil {
		return DefineRequest{}, domains.Errorf(domains.CodeInvalid, "malformed request: config: %w", err)
	}
	return DefineRequest{CommandID: w.CommandID, Config: cfg}, nil
}

// decode is strict (domains.DecodeStrict): one JSON object, keys exactly
// as documented and each once, nothing after it. An empty body is an
// empty object.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := domains.DecodeStrict(body, v); err != nil {
		return domains.Errorf(domains.CodeInvalid, "malformed request: %w", err)
	}
	return nil
}
