package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// The virsh verbs the agent answers (docs/cli.md, "virsh verbs"); the
// others (edit, setvcpus, domblklist, ...) are the CLI's, on top of
// config, info and define.
const (
	VerbReboot         = "reboot"
	VerbAutostart      = "autostart"
	VerbMonitorCommand = "qemu-monitor-command"
	VerbVCPUInfo       = "vcpuinfo"
	VerbDomTime        = "domtime"
)

// AutostartRequest is autostart's body.
type AutostartRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Domain    string `json:"domain"`
	Disable   bool   `json:"disable,omitempty"`
}

// MonitorRequest is qemu-monitor-command's body: Command is the raw QMP
// command, {"execute": NAME, "arguments": {...}}.
type MonitorRequest struct {
	CommandID string          `json:"command_id,omitempty"`
	Domain    string          `json:"domain"`
	Command   json.RawMessage `json:"command"`
}

// VCPUReply is vcpuinfo's answer.
type VCPUReply struct {
	VCPUs []domains.VCPU `json:"vcpus"`
}

// DomTimeReply is domtime's answer: the guest's RTC as the clock
// projection has it (the adjustment QEMU was started with, moved by every
// rtc-changed since) against the agent host's clock.
type DomTimeReply struct {
	Host time.Time `json:"host_time"`
	// GuestRTC is the wall time the guest's RTC reads, written as UTC
	// (with a localtime clock it reads local time).
	GuestRTC time.Time     `json:"guest_rtc"`
	Offset   int64         `json:"offset_seconds"` // GuestRTC - Host, seconds (the live adjustment)
	Clock    domains.Clock `json:"clock"`
}

// VirshService is what the agent's virsh verbs need from owner.Service.
type VirshService interface {
	Reboot(ctx context.Context, cmdID, ref string) (domains.Result, error)
	SetAutostart(ctx context.Context, cmdID, ref string, enabled bool) (domains.Result, error)
	MonitorCommand(ctx context.Context, cmdID, ref string, raw []byte) (domains.MonitorReply, error)
	VCPUs(ctx context.Context, ref string) ([]domains.VCPU, error)
}

// handleVirsh answers the virsh verbs; ok is false for any other verb.
func (h Handler) handleVirsh(ctx context.Context, verb string, body []byte) (res any, ok bool, err error) {
	switch verb {
	case VerbReboot, VerbAutostart, VerbMonitorCommand, VerbVCPUInfo, VerbDomTime:
	default:
		return nil, false, nil
	}
	svc, can := h.Svc.(VirshService)
	if !can {
		return nil, true, domains.Errorf(domains.CodeUnavailable, "this agent cannot %s", verb)
	}
	res, err = h.virsh(ctx, svc, verb, body)
	return res, true, err
}

func (h Handler) virsh(ctx context.Context, svc VirshService, verb string, body []byte) (any, error) {
	switch verb {
	case VerbAutostart:
		var r AutostartRequest
		if err := decode(body, &r); err != nil {
			return nil, err
		}
		if r.Domain == "" {
			return nil, domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
		}
		return svc.SetAutostart(ctx, r.CommandID, r.Domain, !r.Disable)
	case VerbMonitorCommand:
		var r MonitorRequest
		if err := decode(body, &r); err != nil {
			return nil, err
		}
		if r.Domain == "" || len(r.Command) == 0 {
			return nil, domains.Errorf(domains.CodeInvalid, "qemu-monitor-command takes \"domain\" and \"command\"")
		}
		return svc.MonitorCommand(ctx, r.CommandID, r.Domain, r.Command)
	}
	var r DomainRequest
	if err := decodeRef(body, &r); err != nil {
		return nil, err
	}
	if r.Paused || r.ForceBoot || r.At != "" || r.Live {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes only \"domain\" (and \"command_id\")", verb)
	}
	switch verb {
	case VerbReboot:
		return svc.Reboot(ctx, r.CommandID, r.Domain)
	case VerbVCPUInfo:
		cpus, err := svc.VCPUs(ctx, r.Domain)
		if err != nil {
			return nil, err
		}
		return VCPUReply{VCPUs: cpus}, nil
	}
	d, err := h.Svc.Get(r.Domain) // domtime
	if err != nil {
		return nil, err
	}
	if d.Live == nil {
		return nil, domains.Errorf(domains.CodeConflict, "domain %q is not running (%s): its RTC runs only with QEMU", d.Config.Name, d.State)
	}
	now := time.Now().UTC().Truncate(time.Second)
	return DomTimeReply{Host: now, GuestRTC: now.Add(time.Duration(d.Live.RTC) * time.Second), Offset: d.Live.RTC, Clock: d.Config.Clock}, nil
}
