package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

// gateHandler: "hold" (a change) blocks until release is closed; "peek"
// (a read) and "poke" (a change) answer at once.
type gateHandler struct {
	release chan struct{}
	holding atomic.Int64
}

func (h *gateHandler) Handle(ctx context.Context, verb string, _ []byte) (any, error) {
	switch verb {
	case "hold":
		h.holding.Add(1)
		defer h.holding.Add(-1)
		select {
		case <-h.release:
			return "held", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "peek", "poke":
		return verb, nil
	}
	return nil, errors.New("no such verb in test")
}

// startPools serves hold, peek and poke with a change pool of 2 and, when
// reads is set, peek in a read pool of its own; 4 holds are sent (2 run,
// 2 wait), so the change pool is full when it returns.
func startPools(t *testing.T, reads []string) (*bus.Client, *gateHandler) {
	t.Helper()
	_, nc := embedded(t)
	h := &gateHandler{release: make(chan struct{})}
	s, err := bus.StartCommands(context.Background(), nc, h, bus.CommandOptions{
		Host: host, Verbs: []string{"hold", "peek", "poke"}, MaxInFlight: 2, ReadVerbs: reads, MaxReadsInFlight: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := bus.NewClient(nc, host)
	var wg sync.WaitGroup
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(h.release) })
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	for range 4 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := c.Call(ctx, "hold", nil, nil); err != nil {
				t.Errorf("hold: %v", err)
			}
		})
	}
	waitFor(t, 30*time.Second, "2 holds in flight", func() bool { return h.holding.Load() == 2 })
	return c, h
}

// A read is answered while every handler of the change pool is busy; a
// change waits for the change pool (docs/bus.md, Handler pools).
func TestCommandReadPoolAnswersWhileChangesAreFull(t *testing.T) {
	c, h := startPools(t, []string{"peek"})
	for range 3 { // more reads than the read pool holds: each finishes
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var got string
		err := c.Call(ctx, "peek", nil, &got)
		cancel()
		if err != nil || got != "peek" {
			t.Fatalf("peek with the change pool full = %q, %v; want an answer", got, err)
		}
	}
	if n := h.holding.Load(); n != 2 {
		t.Fatalf("%d holds in flight after the reads, want 2 (the pool is still full)", n)
	}
	// A change is not answered while its pool is full.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "poke", nil, nil); !errors.Is(err, domains.ErrUnavailable) {
		t.Fatalf("poke with the change pool full = %v, want unavailable (timed out waiting)", err)
	}
}

// The control: with one pool for all verbs, the same read waits behind
// the holds. This is what the read pool changes.
func TestCommandOnePoolReadWaits(t *testing.T) {
	c, _ := startPools(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "peek", nil, nil); !errors.Is(err, domains.ErrUnavailable) {
		t.Fatalf("peek behind a full shared pool = %v, want unavailable (timed out waiting)", err)
	}
}

func TestStartCommandsRefusesUnknownReadVerb(t *testing.T) {
	_, nc := embedded(t)
	_, err := bus.StartCommands(context.Background(), nc, &gateHandler{}, bus.CommandOptions{
		Host: host, Verbs: []string{"peek"}, ReadVerbs: []string{"peak"},
	})
	if !errors.Is(err, domains.ErrInvalid) {
		t.Fatalf("StartCommands with a read verb not served = %v, want invalid", err)
	}
}
