package agent

import (
	"context"
	"time"
)

// Projection snapshots bound the agent's start time: it loads the newest
// snapshot and replays only the events after it.

func (a *agent) startSnapshots(context.Context) error {
	a.snapStop = background(a.snapshotLoop)
	return nil
}

// stopSnapshots ends the loop and takes a last snapshot, so the next start
// replays nothing.
func (a *agent) stopSnapshots(ctx context.Context) error {
	a.snapStop()
	return a.snapshot(ctx)
}

func (a *agent) snapshotLoop(ctx context.Context) {
	last := a.store.LastSeq()
	for {
		ch := a.store.Committed()
		if a.svc.LastSeq() >= last+a.cfg.SnapshotEvery {
			if err := a.snapshot(ctx); err != nil {
				a.log.Warn().Err(err).Msg("snapshot failed")
				a.metrics.snapshotsErr.Inc()
			}
			last = a.svc.LastSeq()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		// Snapshots are for start-up speed, not durability: rate-limit them.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

func (a *agent) snapshot(ctx context.Context) error {
	seq, data, err := a.svc.Snapshot()
	if err != nil || seq == 0 {
		return err
	}
	return a.store.SaveSnapshot(ctx, seq, data)
}
