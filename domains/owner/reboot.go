package owner

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Reboot is libvirt's fake reboot: QEMU is told to pause instead of exiting
// when the guest powers off, the ACPI power button is pressed, and when
// the guest has powered off (SHUTDOWN) the watcher resets the machine and
// lets it run again instead of stopping it (fakeReboot, below). The log
// reads shutdown (guest), reset (reboot), resumed (rebooted): the same
// QEMU, a fresh boot. Like shutdown, the command returns once the button
// is pressed; the guest decides. A later shutdown cancels a reboot the
// guest has not acted on, as in libvirt.
func (s *Service) Reboot(ctx context.Context, cmdID, ref string) (domains.Result, error) {
	return s.once(ctx, cmdID, requestDigest("reboot", ref, nil), func() (domains.Result, error) {
		d, unlock, err := s.acquire(ctx, ref, domains.JobReboot, cmdID)
		if err != nil {
			return domains.Result{}, err
		}
		defer unlock()
		if d.State != domains.StateRunning {
			return domains.Result{}, domains.Errorf(domains.CodeConflict, "cannot reboot domain %q: it is %s", d.Config.Name, d.State)
		}
		rb, h, err := capability[rebooter](s, d, "reboot")
		if err != nil {
			return domains.Result{}, err
		}
		cause := cmdID
		h.reboot.Store(&cause)
		if err := rb.PauseOnShutdown(ctx, true); err != nil {
			h.reboot.Store(nil)
			return domains.Result{}, coded(domains.CodeUnavailable, "reboot %q: %w", d.Config.Name, err)
		}
		if err := rb.Powerdown(ctx); err != nil {
			h.reboot.Store(nil)
			_ = rb.PauseOnShutdown(ctx, false)
			return domains.Result{}, coded(domains.CodeUnavailable, "reboot %q: %w", d.Config.Name, err)
		}
		res := domains.Result{Domain: d.Config.UUID, Name: d.Config.Name, Seqs: []uint64{}, State: d.State}
		return res, s.recordCommand(ctx, cmdID, res)
	})
}

// rebooter is what a fake reboot needs of a running guest (the capability
// hypervisor/qemu's Guest has).
type rebooter interface {
	lifecycle
	// PauseOnShutdown sets what QEMU does when the guest powers off:
	// pause (true) or exit (false, the default). QMP set-action.
	PauseOnShutdown(ctx context.Context, pause bool) error
}

// fakeReboot runs in the watcher, under the fold lock, after a SHUTDOWN
// hint was recorded: if a reboot is pending on this guest, QEMU has paused
// (PauseOnShutdown) and is reset and resumed; its exit on power-off is
// restored for the next time. A reset that fails ends QEMU: the guest did
// power off, and the watcher records it stopped (shutdown).
func (s *Service) fakeReboot(ctx context.Context, h *guestHandle) {
	cause := h.reboot.Swap(nil)
	if cause == nil {
		return
	}
	rb, ok := h.guest.(rebooter)
	if !ok {
		return
	}
	err := rb.Reset(ctx)
	if err == nil {
		err = rb.Resume(ctx)
	}
	_ = rb.PauseOnShutdown(ctx, false)
	if err != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = h.guest.Kill(kctx)
		return
	}
	_, _ = s.appendFold(ctx, time.Time{}, "", *cause, h.id,
		domains.Reset{Guest: false, Reason: domains.ResetReboot}, domains.Resumed{Reason: domains.ResumedReboot})
}

// cancelReboot forgets a reboot the guest has not acted on (a shutdown
// now means power off) and has QEMU exit on power-off again.
func (s *Service) cancelReboot(ctx context.Context, g lifecycle) {
	s.lmu.Lock()
	var h *guestHandle
	for _, x := range s.guests {
		if any(x.guest) == any(g) {
			h = x
		}
	}
	s.lmu.Unlock()
	if h == nil || h.reboot.Swap(nil) == nil {
		return
	}
	if rb, ok := g.(rebooter); ok {
		_ = rb.PauseOnShutdown(ctx, false)
	}
}

// finishReboot completes, at recovery, a fake reboot the last agent left
// half done: a QEMU found paused in run state "shutdown" powered off while
// told to pause on power-off, which only a pending reboot does. What
// happened meanwhile is recorded (shutdown), then the reset and resume the
// reboot was waiting for. A reset that fails ends QEMU, as in fakeReboot.
func (s *Service) finishReboot(ctx context.Context, id uuid.UUID, g domains.Guest, d domains.Domain) error {
	rb, ok := g.(rebooter)
	if !ok || d.State != domains.StateRunning {
		return nil
	}
	st, err := g.Status(ctx)
	if err != nil || st.Status != "shutdown" {
		return nil
	}
	if _, err := s.commit(ctx, "", id, domains.Shutdown{Reason: domains.ShutdownGuest, QEMUReason: "guest-shutdown"}); err != nil {
		return err
	}
	if err := rb.Reset(ctx); err != nil {
		_ = g.Kill(ctx)
		return fmt.Errorf("finish the reboot: %w", err)
	}
	if err := rb.Resume(ctx); err != nil {
		_ = g.Kill(ctx)
		return fmt.Errorf("finish the reboot: %w", err)
	}
	_, err = s.commit(ctx, "", id, domains.Reset{Reason: domains.ResetReboot}, domains.Resumed{Reason: domains.ResumedReboot})
	return err
}
