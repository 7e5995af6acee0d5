package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

const host = "host-a"

// testLog is a store as the bus sees it plus a way to append, so each test
// runs against the in-memory fake and the real bbolt store alike.
type testLog interface {
	bus.RelayStore
	appendEvent(ctx context.Context, e domains.Event) (uint64, error)
}

type fakeLog struct{ *bustest.Store }

func (f fakeLog) appendEvent(ctx context.Context, e domains.Event) (uint64, error) {
	seqs, err := f.Append(ctx, e)
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

type boltLog struct{ *store.Store }

func (b boltLog) appendEvent(ctx context.Context, e domains.Event) (uint64, error) {
	seqs, err := b.Append(ctx, store.AppendRequest{
		Domain: e.Domain, ExpectedVersion: store.AnyVersion, Events: []domains.Event{e},
	})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

type backend struct {
	name string
	open func(tb testing.TB) testLog
}

func backends() []backend {
	return []backend{
		{"fake", func(testing.TB) testLog { return fakeLog{bustest.NewStore()} }},
		{"bbolt", func(tb testing.TB) testLog { return openBolt(tb, false) }},
	}
}

// openBolt opens a real store; noSync only where a test appends thousands
// of events and durability is beside the point.
func openBolt(tb testing.TB, noSync bool) boltLog {
	tb.Helper()
	s, err := store.Open(filepath.Join(tb.TempDir(), "events.db"), store.Options{NoSync: noSync, InitialMmapSize: 64 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return boltLog{s}
}

// embedded starts the bus's own embedded server on a random port and
// connects to it with bus.Connect, as the agent does.
func embedded(tb testing.TB) (*bus.Embedded, *nats.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e, connect(tb, e.ClientURL())
}

func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, url, bus.ConnectOptions{Name: "test-agent"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// runRelay runs a relay until the test ends and checks it stopped cleanly.
func runRelay(tb testing.TB, nc *nats.Conn, st bus.RelayStore, o bus.RelayOptions) *bus.Relay {
	tb.Helper()
	r, stop := relayRun(nc, st, o)
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("relay: %v", err)
		}
	})
	return r
}

// domainsN returns n stable domain IDs.
func domainsN(n int) []uuid.UUID {
	out := make([]uuid.UUID, n)
	for i := range out {
		out[i] = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "vm-%d", i))
	}
	return out
}

// appendConcurrently appends total events from workers goroutines, spread
// over a few domains, and returns the first error.
func appendConcurrently(ctx context.Context, st testLog, workers, total int) error {
	doms := domainsN(workers)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			var err error
			for i := w; i < total && err == nil; i += workers {
				_, err = st.appendEvent(ctx, bustest.Event(doms[w], host, int64(i)))
			}
			errs <- err
		}()
	}
	var first error
	for range workers {
		first = errors.Join(first, <-errs)
	}
	return first
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
