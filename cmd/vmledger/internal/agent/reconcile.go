package agent

import (
	"context"
	"time"
)

// reconcileSoon, once the log accepts appends again, has the service take
// up the active guests nobody watches (owner.Service.Reconcile): a QEMU
// that ended while the log refused appends may have no record of its end.
// It runs off the store's writer goroutine, which tells us of the
// recovery and must not wait for QEMUs.
func (a *agent) reconcileSoon() {
	svc := a.reconciler.Load()
	if svc == nil {
		return // recovered before the service started: Recover runs anyway
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := svc.Reconcile(ctx); err != nil {
			a.log.Warn().Err(err).Msg("after the log recovered: some guests could not be reconciled")
		}
	}()
}
