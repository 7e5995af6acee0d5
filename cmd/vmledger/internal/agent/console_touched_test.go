package agent

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

type stateLookup map[uuid.UUID]domains.State

func (l stateLookup) Get(ref string) (domains.Domain, error) {
	id, _ := uuid.Parse(ref)
	st, ok := l[id]
	if !ok {
		return domains.Domain{}, domains.ErrNotFound
	}
	return domains.Domain{Config: domains.Config{UUID: id}, State: st}, nil
}

// The console loop's per-fold check: a touched domain that became
// active gets a bridge, one no longer active (or gone) loses it, and an
// untouched one is left as it is (the full rescan is the backstop).
func TestConsolesUpdateTouched(t *testing.T) {
	dir := t.TempDir()
	c := &consoles{path: func(id uuid.UUID) string { return filepath.Join(dir, id.String()) }, log: zerolog.Nop(), active: map[uuid.UUID]func(){}}
	t.Cleanup(c.closeAll)
	ctx := context.Background()
	up, down, gone, other := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	c.sync(ctx, []domains.Domain{{Config: domains.Config{UUID: down}, State: domains.StateRunning},
		{Config: domains.Config{UUID: gone}, State: domains.StatePaused}, {Config: domains.Config{UUID: other}, State: domains.StateRunning}})
	var tt touched
	for _, id := range []uuid.UUID{up, down, gone} {
		tt.add(id)
	}
	c.update(ctx, tt.take(), stateLookup{up: domains.StateRunning, down: domains.StateShutoff, other: domains.StateShutoff})
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, want := range map[uuid.UUID]bool{up: true, down: false, gone: false, other: true} {
		if _, ok := c.active[id]; ok != want {
			t.Errorf("domain %s bridged = %v, want %v", id, ok, want)
		}
	}
	if len(tt.take()) != 0 {
		t.Error("take did not empty the set")
	}
}
