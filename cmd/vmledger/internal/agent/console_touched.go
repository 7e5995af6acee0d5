package agent

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// touched collects the domains of the commits folded since the console
// loop last looked. The loop then checks only those: a full sync scans
// every domain (10,000 on the load benchmark's agent), and ran after
// every commit, a tenth of the agent's CPU at 1,000 commands a second
// (docs/performance.md, "Load").
type touched struct {
	mu  sync.Mutex
	ids map[uuid.UUID]struct{}
}

func (t *touched) add(id uuid.UUID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids == nil {
		t.ids = map[uuid.UUID]struct{}{}
	}
	t.ids[id] = struct{}{}
}

func (t *touched) take() map[uuid.UUID]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := t.ids
	t.ids = nil
	return ids
}

// fullSyncEvery bounds how often the console loop rescans every domain, a
// backstop to the per-domain checks.
const fullSyncEvery = time.Second

// update starts or stops the bridges of the domains ids to match their
// state now (a domain not found has none).
func (c *consoles) update(ctx context.Context, ids map[uuid.UUID]struct{}, lookup domainLookup) {
	for id := range ids {
		d, err := lookup.Get(id.String())
		active := err == nil && d.State.Active()
		c.mu.Lock()
		stop, bridged := c.active[id]
		switch {
		case active && !bridged:
			c.active[id] = c.bridge(ctx, id)
		case !active && bridged:
			stop()
			delete(c.active, id)
		}
		c.mu.Unlock()
	}
}

// consoleLoop keeps the bridges matching the active domains: on every
// fold it checks the domains folded, and rescans all at most every
// fullSyncEvery.
func (a *agent) consoleLoop(ctx context.Context) {
	var last time.Time
	for {
		ids := a.touchedIDs.take() // before the reads below: a later fold wakes us again
		if now := time.Now(); now.Sub(last) >= fullSyncEvery {
			a.consoles.sync(ctx, a.svc.Active())
			last = now
		} else {
			a.consoles.update(ctx, ids, a.svc)
		}
		select {
		case <-a.folded:
		case <-ctx.Done():
			return
		}
	}
}
