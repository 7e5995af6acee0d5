package owner_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// landingLog commits every append but, when armed, reports the next one as
// failed: the store's "the caller gave up after the writer took it" case.
type landingLog struct {
	*domainstest.MemLog
	lie bool
}

func (l *landingLog) Append(ctx context.Context, req domains.AppendRequest) ([]uint64, error) {
	seqs, err := l.MemLog.Append(ctx, req)
	if err == nil && l.lie {
		l.lie = false
		return nil, errors.New("context canceled after the writer took the append")
	}
	return seqs, err
}

// A start whose started event landed although the append reported an
// error is on record: the guest keeps running and is watched, and the
// reply (first or retried) is the recorded one. Killing it would leave the
// log saying "running" over a dead guest.
func TestServiceStartAppendLandedAnyway(t *testing.T) {
	ctx := context.Background()
	mem := domainstest.NewMemLog()
	log := &landingLog{MemLog: mem}
	drv := domainstest.NewFakeDriver()
	svc := owner.NewService(owner.Options{Log: log, Driver: drv, Host: "h"})
	t.Cleanup(svc.Close)
	cfg := domains.Config{Name: "vm", MemoryMiB: 16, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	if _, err := svc.Define(ctx, "", cfg); err != nil {
		t.Fatal(err)
	}
	log.lie = true
	res, err := svc.Start(ctx, "start-1", "vm", domains.StartOptions{})
	if err != nil {
		t.Fatalf("start whose events landed: %v", err)
	}
	d, _ := svc.Get("vm")
	g := drv.Guest(d.Config.UUID)
	if g.CallCount("Kill") != 0 || g.Exited() {
		t.Fatalf("guest killed although its start is on record: %v", g.Calls())
	}
	if d.State != domains.StateRunning || res.State != domains.StateRunning || len(res.Seqs) != 1 || res.Seqs[0] != 2 {
		t.Fatalf("domain %s, result %+v", d.State, res)
	}
	again, err := svc.Start(ctx, "start-1", "vm", domains.StartOptions{})
	if err != nil || !reflect.DeepEqual(again, res) {
		t.Fatalf("retry: %+v, %v; want %+v", again, err, res)
	}
	// Watched: its exit is recorded.
	g.Terminate(domains.GuestExit{Signaled: true, Err: "killed"})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := mem.Wait(wctx, 3); err != nil {
		t.Fatal(err)
	}
	evs, _ := mem.Events()
	if last := evs[len(evs)-1]; last.Type != domains.TypeStopped {
		t.Fatalf("last event %s, want stopped", last.Type)
	}
}
