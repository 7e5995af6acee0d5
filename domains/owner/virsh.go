package owner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmledger/vmledger/domains"
)

// SetAutostart records whether the agent starts the domain when it starts
// (virsh autostart [--disable]). A setting that is already so appends
// nothing: the result has no sequences.
func (s *Service) SetAutostart(ctx context.Context, cmdID, ref string, enabled bool) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("autostart", ref, enabled), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobAutostart, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if d.Autostart == enabled {
			res := domains.Result{Domain: d.Config.UUID, Name: d.Config.Name, Seqs: []uint64{}, State: d.State}
			return res, s.recordCommand(ctx, cmdID, res)
		}
		return s.commit(ctx, cmdID, d.Config.UUID, domains.AutostartSet{Enabled: enabled})
	})
}

// Autostart starts every shut-off domain marked autostart, as libvirtd
// does when it starts; the agent calls it once guests are recovered. A
// domain with a managed save image is restored (Start does that). A start
// that fails is reported and the others go on.
func (s *Service) Autostart(ctx context.Context) (started []string, err error) {
	var errs []error
	for _, d := range s.List() {
		if s.driver == nil && d.Autostart && d.State == domains.StateShutoff {
			errs = append(errs, fmt.Errorf("autostart %q: this agent has no hypervisor", d.Config.Name))
			continue
		}
		if !d.Autostart || d.State != domains.StateShutoff {
			continue
		}
		if _, e := s.Start(ctx, "", d.Config.UUID.String(), domains.StartOptions{}); e != nil {
			errs = append(errs, fmt.Errorf("autostart %q: %w", d.Config.Name, e))
			continue
		}
		started = append(started, d.Config.Name)
	}
	return started, errors.Join(errs...)
}

// monitor is what qemu-monitor-command needs of a running guest.
type monitor interface {
	MonitorCommand(ctx context.Context, execute string, args json.RawMessage) (json.RawMessage, error)
}

// MonitorCommand sends a raw QMP command to the domain's QEMU (virsh
// qemu-monitor-command) and records it: qemu-monitor-command, which taints
// the running domain (custom-monitor), as libvirt does. A command QEMU
// answered with an error is recorded too: it reached QEMU.
func (s *Service) MonitorCommand(ctx context.Context, cmdID, ref string, raw []byte) (domains.MonitorReply, error) {
	execute, args, err := domains.ParseMonitorCommand(raw)
	if err != nil {
		return domains.MonitorReply{}, err
	}
	var reply domains.MonitorReply
	res, err := s.once(ctx, cmdID, requestDigest("qemu-monitor-command", ref, json.RawMessage(raw)), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobMonitorCommand, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if !d.State.Active() {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q is not running (%s)", d.Config.Name, d.State)
		}
		m, _, err := capability[monitor](s, d, "take raw commands")
		if err != nil {
			return domains.Result{}, err
		}
		ret, qerr := m.MonitorCommand(ctx, execute, args)
		p := domains.MonitorCommand{Execute: execute}
		if len(args) > 0 {
			sum := sha256.Sum256(args)
			p.ArgsBytes, p.ArgsDigest = uint64(len(args)), "sha256:"+hex.EncodeToString(sum[:])
		}
		if qerr == nil && len(ret) > maxMonitorReturn {
			// It ran; only its answer cannot travel back over the bus.
			qerr = fmt.Errorf("QEMU's reply is %d bytes, more than the %d a reply may carry", len(ret), maxMonitorReturn)
			ret = nil
		}
		if qerr != nil {
			p.Error = truncate(qerr.Error(), 1024)
		}
		reply.Return, reply.Error = ret, p.Error
		return s.commit(ctx, cmdID, d.Config.UUID, p)
	})
	reply.Result = res
	return reply, err
}

// maxMonitorReturn bounds QEMU's reply to a raw command, so that the
// answer fits a NATS message (1 MiB by default) with room to spare.
const maxMonitorReturn = 512 << 10

// vcpuLister is what vcpuinfo needs of a running guest.
type vcpuLister interface {
	VCPUs(ctx context.Context) ([]domains.VCPU, error)
}

// VCPUs lists the running domain's vCPUs (virsh vcpuinfo). A read: it
// takes no job, so it answers during an asynchronous job too.
func (s *Service) VCPUs(ctx context.Context, ref string) ([]domains.VCPU, error) {
	d, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	if !d.State.Active() {
		return nil, domains.Errorf(domains.CodeConflict, "domain %q is not running (%s)", d.Config.Name, d.State)
	}
	l, _, err := capability[vcpuLister](s, d, "list vCPUs")
	if err != nil {
		return nil, err
	}
	cpus, err := l.VCPUs(ctx)
	if err != nil {
		return nil, coded(domains.CodeUnavailable, "vcpuinfo %q: %w", d.Config.Name, err)
	}
	return cpus, nil
}

// truncate bounds a message kept in an event.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// capability returns the running guest of d as the capability T the
// caller declared (what: what T does, for the error when it cannot).
func capability[T any](s *Service, d domains.Domain, what string) (T, *guestHandle, error) {
	var zero T
	h := s.guest(d.Config.UUID)
	if h == nil {
		return zero, nil, domains.Errorf(domains.CodeUnavailable, "domain %q: no connection to its QEMU", d.Config.Name)
	}
	c, ok := h.guest.(T)
	if !ok {
		return zero, nil, domains.Errorf(domains.CodeUnavailable, "domain %q: its QEMU cannot %s", d.Config.Name, what)
	}
	return c, h, nil
}
