package owner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// devices is what the device verbs need of a running guest (the
// capability hypervisor/qemu's Guest has).
type devices interface {
	// CheckDevice refuses host files a guest may not be given.
	CheckDevice(spec domains.DeviceSpec) error
	// AttachDevice creates the device and its backends; on failure it
	// leaves nothing behind.
	AttachDevice(ctx context.Context, spec domains.DeviceSpec) error
	// DetachDevice asks for the unplug (device_del).
	DetachDevice(ctx context.Context, id string) error
	// ReleaseDevice frees the backends of a device QEMU deleted.
	ReleaseDevice(ctx context.Context, spec domains.DeviceSpec) error
	// PeripheralIDs is the device set as QEMU has it.
	PeripheralIDs(ctx context.Context) ([]string, error)
}

// AttachDevice adds a device (virsh attach-device). Every check runs
// before QEMU is touched; a bad spec changes nothing and appends nothing.
func (s *Service) AttachDevice(ctx context.Context, cmdID, ref string, spec domains.DeviceSpec, o domains.DeviceOptions) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("attach-device", ref, struct {
		Spec domains.DeviceSpec
		Opts domains.DeviceOptions
	}{spec, o}), func() (domains.Result, error) {
		if err := spec.Check(); err != nil {
			return domains.Result{}, err
		}
		if spec.Kind == domains.KindDisk && spec.Format == "" {
			spec.Format = "raw"
		}
		d, unlock, err := s.acquire(ctx, ref, domains.JobAttachDevice, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		live, persist, err := o.Targets(d.State.Active())
		if err != nil {
			return domains.Result{}, err
		}
		for _, c := range []struct {
			on   bool
			what string
			cfg  domains.Config
		}{{persist, "config", d.Config}, {live, "live config", d.LiveConfig()}} {
			if !c.on {
				continue
			}
			if _, dup := c.cfg.FindDevice(spec.ID); dup {
				return domains.Result{}, domains.Errorf(domains.CodeInvalid, "device %s: the %s already has a device of that id", domains.Quote(spec.ID), c.what)
			}
			if err := c.cfg.WithDevice(spec).Normalize().Validate(); err != nil {
				return domains.Result{}, domains.Errorf(domains.CodeInvalid, "device %s: %w", domains.Quote(spec.ID), err)
			}
		}
		if spec.Kind == domains.KindDisk && spec.Disk().EffectiveBus() == domains.BusUSB && spec.USBPort == 0 {
			// Fix the port now, so a restart, restore or migration puts
			// the disk where this QEMU has it.
			cfg := d.Config
			if live {
				cfg = d.LiveConfig()
			}
			if ports, ok := cfg.WithDevice(spec).USBPortsOf(); ok {
				spec.USBPort = ports[spec.ID]
			}
		}
		use, err := s.confinedDevice(spec, live)
		if err != nil {
			return domains.Result{}, err
		}
		if live {
			if bus := spec.Disk().EffectiveBus(); spec.Kind == domains.KindDisk && bus != domains.BusVirtio && bus != domains.BusUSB {
				return domains.Result{}, domains.Errorf(domains.CodeInvalid, "device %s: bus %s cannot be hot-plugged (virtio or usb)", domains.Quote(spec.ID), bus)
			}
			dv, err := s.devicesOf(d)
			if err != nil {
				return domains.Result{}, err
			}
			if err := dv.CheckDevice(use); err != nil {
				return domains.Result{}, err
			}
			if err := dv.AttachDevice(ctx, use); err != nil {
				return domains.Result{}, coded(domains.CodeUnavailable, "attach %s to %q: %w", spec.ID, d.Config.Name, err)
			}
		}
		return s.commit(ctx, cmdID, d.Config.UUID, domains.DeviceAttached{Live: live, Persist: persist, Spec: &spec})
	})
}

// DetachDevice removes a device (virsh detach-device). Live, it asks QEMU
// and records device-detach-requested; DEVICE_DELETED completes it
// (device-detached), DEVICE_UNPLUG_GUEST_ERROR or the timeout fails it.
func (s *Service) DetachDevice(ctx context.Context, cmdID, ref, id string, o domains.DeviceOptions) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("detach-device", ref, struct {
		ID   string
		Opts domains.DeviceOptions
	}{id, o}), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobDetachDevice, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		live, persist, err := o.Targets(d.State.Active())
		if err != nil {
			return domains.Result{}, err
		}
		if _, ok := d.Config.FindDevice(id); persist && !ok {
			return domains.Result{}, domains.Errorf(domains.CodeNotFound, "domain %q: the config has no device %s", d.Config.Name, domains.Quote(id))
		}
		if !live {
			return s.commit(ctx, cmdID, d.Config.UUID, domains.DeviceDetached{ID: id, Persist: true})
		}
		if _, ok := d.LiveConfig().FindDevice(id); !ok {
			return domains.Result{}, domains.Errorf(domains.CodeNotFound, "domain %q: no device %s attached", d.Config.Name, domains.Quote(id))
		}
		if slices.Contains(d.Pending, id) {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "domain %q: the detach of %s is pending already (the guest has not released it)", d.Config.Name, id)
		}
		dv, err := s.devicesOf(d)
		if err != nil {
			return domains.Result{}, err
		}
		if err := dv.DetachDevice(ctx, id); err != nil {
			return domains.Result{}, coded(domains.CodeUnavailable, "detach %s from %q: %w", id, d.Config.Name, err)
		}
		res, err := s.commit(ctx, cmdID, d.Config.UUID, domains.DeviceDetachRequested{ID: id, Persist: persist})
		if err == nil && o.Timeout > 0 {
			s.detachTimeout(d.Config.UUID, id, res.Seqs, o.Timeout)
		}
		return res, err
	})
}

func (s *Service) devicesOf(d domains.Domain) (devices, error) {
	h := s.guest(d.Config.UUID)
	if h == nil {
		return nil, domains.Errorf(domains.CodeUnavailable, "domain %q: no connection to its QEMU", d.Config.Name)
	}
	dv, ok := h.guest.(devices)
	if !ok {
		return nil, domains.Errorf(domains.CodeUnavailable, "domain %q: its QEMU cannot hot-plug devices", d.Config.Name)
	}
	return dv, nil
}

// detachTimeout records device-detach-failed when the detach requested
// (at seqs) is still pending after d.
func (s *Service) detachTimeout(id uuid.UUID, dev string, seqs []uint64, d time.Duration) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.closed:
			return
		}
		unlock := s.foldLock(id)
		if unlock == nil {
			return
		}
		defer unlock()
		s.mu.RLock()
		cur, ok := s.proj.Get(id)
		s.mu.RUnlock()
		// Still the same pending request: nothing was recorded for the
		// device since (a later request would be a new pending one).
		if !ok || !slices.Contains(cur.Pending, dev) || len(seqs) == 0 || cur.LastSeq < seqs[len(seqs)-1] {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.hintTO)
		defer cancel()
		s.record(ctx, id, time.Time{}, domains.DeviceDetachFailed{ID: dev, Error: fmt.Sprintf("timeout: the guest did not release the device within %s", d)})
	}()
}

// deviceHint folds DEVICE_DELETED (the device is gone: release what was
// created for it, then record it) and DEVICE_UNPLUG_GUEST_ERROR. Events
// for devices not on record (no id, QEMU's own) change nothing.
func (s *Service) deviceHint(ctx context.Context, h *guestHandle, d domains.Domain, ev domains.GuestEvent) domains.Payload {
	spec, ok := d.LiveConfig().FindDevice(ev.Device)
	if !ok || ev.Device == "" {
		return nil
	}
	if ev.Kind == domains.GuestDeviceUnplugError {
		if !slices.Contains(d.Pending, ev.Device) {
			return nil
		}
		return domains.DeviceDetachFailed{ID: ev.Device, Error: "the guest refused to release the device (DEVICE_UNPLUG_GUEST_ERROR)"}
	}
	if dv, ok := h.guest.(devices); ok {
		// A backend that cannot be freed is logged by the guest; the
		// device itself is gone all the same, which is the fact.
		_ = dv.ReleaseDevice(ctx, spec)
	}
	// A generic device had one config only (device events schema 1).
	return domains.DeviceDetached{ID: ev.Device, Live: true, Persist: spec.Kind == ""}
}

// deviceDiff re-reads the device set from QEMU after a reconnect and
// records the devices that went away meanwhile (a detach the guest
// completed while the agent was down), releasing their backends.
func (s *Service) deviceDiff(ctx context.Context, id uuid.UUID, g domains.Guest, d domains.Domain) error {
	dv, ok := g.(devices)
	if !ok || d.Running == nil {
		return nil
	}
	ids, err := dv.PeripheralIDs(ctx)
	if err != nil {
		return err
	}
	// A device QEMU has and the log does not (an agent that died between
	// device_add and its append) is left alone: its spec is unknown, so
	// it can be neither recorded nor released the way it was made.
	var errs []error
	for _, spec := range d.LiveConfig().DeviceSpecs() {
		if slices.Contains(ids, spec.ID) {
			continue
		}
		_ = dv.ReleaseDevice(ctx, spec) // the guest logs what it cannot free
		if _, err := s.commit(ctx, "", id, domains.DeviceDetached{ID: spec.ID, Live: true, Persist: spec.Kind == ""}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
