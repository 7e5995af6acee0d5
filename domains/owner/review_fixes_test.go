package owner_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// flakyLog fails the next n appends (nothing written), then works.
type flakyLog struct {
	*domainstest.MemLog
	mu sync.Mutex
	n  int
}

func (l *flakyLog) failNext(n int) { l.mu.Lock(); l.n = n; l.mu.Unlock() }

func (l *flakyLog) Append(ctx context.Context, req domains.AppendRequest) ([]uint64, error) {
	l.mu.Lock()
	fail := l.n > 0
	if fail {
		l.n--
	}
	l.mu.Unlock()
	if fail {
		return nil, errors.New("disk briefly unavailable")
	}
	return l.MemLog.Append(ctx, req)
}

type rig struct {
	ctx  context.Context
	mem  *domainstest.MemLog
	log  *flakyLog
	drv  *domainstest.FakeDriver
	svc  *owner.Service
	cfg  domains.Config
	uuid string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	r := &rig{ctx: ctx, mem: domainstest.NewMemLog(), drv: domainstest.NewFakeDriver()}
	r.log = &flakyLog{MemLog: r.mem}
	r.svc = owner.NewService(owner.Options{Log: r.log, Driver: r.drv, Host: "h"})
	t.Cleanup(func() {
		r.svc.Close()
		p, err := r.mem.Replay()
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		if ok, diff := r.svc.Equal(p); !ok {
			t.Fatalf("live projection differs from replay: %s", diff)
		}
	})
	res, err := r.svc.Define(ctx, "", domains.Config{Name: "vm", MemoryMiB: 16, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}})
	if err != nil {
		t.Fatal(err)
	}
	r.uuid = res.Domain.String()
	if _, err := r.svc.Start(ctx, "", "vm", domains.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) guest() *domainstest.FakeGuest {
	d, _ := r.svc.Get("vm")
	return r.drv.Guest(d.Config.UUID)
}

func (r *rig) lastTypes(t *testing.T, n int) []domains.Type {
	t.Helper()
	evs, err := r.mem.Events()
	if err != nil {
		t.Fatal(err)
	}
	var out []domains.Type
	for _, e := range evs[max(0, len(evs)-n):] {
		out = append(out, e.Type)
	}
	return out
}

// A guest in shutdown cannot be suspended: there is no resume from there.
func TestServiceNoSuspendInShutdown(t *testing.T) {
	r := newRig(t)
	r.guest().Push(domains.GuestEvent{Kind: domains.GuestShutdown, Guest: true, Reason: "guest-shutdown"})
	if err := r.mem.Wait(r.ctx, 3); err != nil {
		t.Fatal(err)
	}
	_, err := r.svc.Suspend(r.ctx, "", "vm")
	if !errors.Is(err, domains.ErrConflict) || r.guest().CallCount("Pause") != 0 || r.mem.LastSeq() != 3 {
		t.Fatalf("suspend in shutdown: %v, pause calls %d, last seq %d", err, r.guest().CallCount("Pause"), r.mem.LastSeq())
	}
}

// Destroy whose append fails: QEMU is gone, so the watcher, still holding
// the guest, records its end once the log works again.
func TestServiceDestroyAppendFails(t *testing.T) {
	r := newRig(t)
	r.log.failNext(1)
	if _, err := r.svc.Destroy(r.ctx, "", "vm"); err == nil {
		t.Fatal("destroy reported success without a record")
	}
	if err := r.mem.Wait(r.ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := r.lastTypes(t, 1); !reflect.DeepEqual(got, []domains.Type{domains.TypeStopped}) {
		t.Fatalf("last event %v", got)
	}
	if d, _ := r.svc.Get("vm"); d.State != domains.StateShutoff {
		t.Fatalf("state %s", d.State)
	}
}

// A hint whose append fails briefly is retried, not lost.
func TestServiceHintRetried(t *testing.T) {
	r := newRig(t)
	r.log.failNext(2)
	r.guest().Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 3600})
	if err := r.mem.Wait(r.ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := r.lastTypes(t, 1); !reflect.DeepEqual(got, []domains.Type{domains.TypeRTCChanged}) {
		t.Fatalf("last event %v", got)
	}
}

// The monitor connection drops but QEMU runs on: the service reattaches,
// re-reads QEMU's state and records the difference, and keeps watching.
func TestServiceReconnectsLostMonitor(t *testing.T) {
	r := newRig(t)
	old := r.guest()
	d, _ := r.svc.Get("vm")
	fresh := domainstest.NewFakeGuest(old.PID(), "kvm")
	fresh.SetStatus(domains.GuestStatus{Running: false, Status: "paused"})
	r.drv.SetAttachable(d.Config.UUID, fresh)
	old.DropMonitor()
	if err := r.mem.Wait(r.ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := r.lastTypes(t, 1); !reflect.DeepEqual(got, []domains.Type{domains.TypePaused}) {
		t.Fatalf("after reconnect: %v", got)
	}
	if !old.Detached() {
		t.Fatal("the dead monitor was not closed")
	}
	fresh.Terminate(domains.GuestExit{Signaled: true, Err: "killed"})
	if err := r.mem.Wait(r.ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := r.lastTypes(t, 1); !reflect.DeepEqual(got, []domains.Type{domains.TypeStopped}) {
		t.Fatalf("after exit: %v", got)
	}
}
