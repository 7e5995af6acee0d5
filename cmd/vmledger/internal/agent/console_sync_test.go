package agent

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// sync matches the bridges to the active domains it is given: a domain
// that became active gets one, a domain no longer given loses its own,
// and one given again keeps the bridge it had.
func TestConsolesSync(t *testing.T) {
	dir := t.TempDir()
	c := &consoles{path: func(id uuid.UUID) string { return filepath.Join(dir, id.String()) }, log: zerolog.Nop(), active: map[uuid.UUID]func(){}}
	t.Cleanup(c.closeAll)
	ctx := context.Background()
	kept, gone, up := uuid.New(), uuid.New(), uuid.New()
	c.sync(ctx, []uuid.UUID{kept, gone})
	stopped := false
	c.mu.Lock()
	stopKept := c.active[kept]
	c.active[kept] = func() { stopped = true; stopKept() }
	c.mu.Unlock()
	c.sync(ctx, []uuid.UUID{kept, up})
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, want := range map[uuid.UUID]bool{kept: true, gone: false, up: true} {
		if _, ok := c.active[id]; ok != want {
			t.Errorf("domain %s bridged = %v, want %v", id, ok, want)
		}
	}
	if stopped {
		t.Error("a domain still active had its bridge stopped and made again")
	}
}
