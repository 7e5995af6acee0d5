package owner

import (
	"context"
	"errors"
	"fmt"
)

// Reconcile reattaches, or records the end of, every guest the log says
// is active but no watcher follows. The agent calls it when the log
// accepts appends again after refusing them (a full disk): a QEMU that
// ended meanwhile through a path that had already let go of it (a save's
// end: QEMU killed, then save-completed and stopped refused) had nobody
// left to record its end, and the log said "running" over nothing until
// the next agent start (found by TestFaultHarness; TestReconcile). A
// guest with a job is left to the job (recoverOne waits for a command's
// job; an asynchronous one makes it busy and it is skipped).
func (s *Service) Reconcile(ctx context.Context) error {
	if s.driver == nil {
		return nil
	}
	var errs []error
	for _, d := range s.List() {
		if !d.State.Active() || s.guest(d.Config.UUID) != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, recoverTimeout)
		err := s.recoverOne(rctx, d.Config.UUID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %q: %w", d.Config.Name, err))
		}
	}
	return errors.Join(errs...)
}
