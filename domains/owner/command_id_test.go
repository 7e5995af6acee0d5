package owner_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
	"github.com/vmledger/vmledger/domains/owner"
)

// A command ID is bound to its request: a retry of the same request gets
// the first reply; another request with a used ID is a conflict that says
// so and changes nothing (issue 7, defect 1).
func TestCommandIDBoundToRequest(t *testing.T) {
	e := newEnv(t)
	cfg := e.define("vm", clockUTC)
	e.start(cfg)
	r1, err := e.svc.Define(e.ctx, "X", cfgNamed("vm2", uuidB, clockUTC))
	if err != nil {
		t.Fatal(err)
	}
	changed := cfgNamed("vm2", uuidB, clockUTC)
	changed.MemoryMiB = 999
	before := e.log.LastSeq()
	for name, do := range map[string]func() (domains.Result, error){
		"destroy":          func() (domains.Result, error) { return e.svc.Destroy(e.ctx, "X", "vm") },
		"suspend":          func() (domains.Result, error) { return e.svc.Suspend(e.ctx, "X", "vm") },
		"start":            func() (domains.Result, error) { return e.svc.Start(e.ctx, "X", "vm2", domains.StartOptions{}) },
		"undefine":         func() (domains.Result, error) { return e.svc.Undefine(e.ctx, "X", "vm2") },
		"define, new body": func() (domains.Result, error) { return e.svc.Define(e.ctx, "X", changed) },
	} {
		_, err := do()
		wantCode(t, err, domains.ErrConflict)
		if err == nil || !strings.Contains(err.Error(), "already used for a different request") {
			t.Fatalf("%s: %v, want the reused-ID conflict", name, err)
		}
	}
	if e.log.LastSeq() != before {
		t.Fatalf("a refused reuse appended %d events", e.log.LastSeq()-before)
	}
	if st := e.get("vm").State; st != domains.StateRunning {
		t.Fatalf("vm is %s: the destroy with a reused ID acted", st)
	}
	{
		// A command recorded without events (shutdown: the guest decides) is
		// bound to its request too.
		if _, err := e.svc.Shutdown(e.ctx, "P", "vm"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Shutdown(e.ctx, "P", "vm"); err != nil {
			t.Fatalf("shutdown retry: %v", err)
		}
		_, err := e.svc.Destroy(e.ctx, "P", "vm")
		wantCode(t, err, domains.ErrConflict)
	}
	// The same request again, also after a restart: the first reply.
	r2, err := e.svc.Define(e.ctx, "X", cfgNamed("vm2", uuidB, clockUTC))
	if err != nil || fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Fatalf("retry: %+v %v, want %+v", r2, err, r1)
	}
	e.restart(e.drv)
	if _, err := e.svc.Destroy(e.ctx, "X", "vm"); err == nil || !strings.Contains(err.Error(), "already used for a different request") {
		t.Fatalf("after restart, a reused ID: %v", err)
	}
	// Paused and not paused are different requests.
	e.svc.Destroy(e.ctx, "d1", "vm")
	if _, err := e.svc.Start(e.ctx, "s", "vm", domains.StartOptions{Paused: true}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Start(e.ctx, "s", "vm", domains.StartOptions{})
	wantCode(t, err, domains.ErrConflict)
}

// Many requests in flight with one ID and different bodies: one runs, the
// others conflict. (Before, all 200 got "ok" and one event was written.)
func TestCommandIDConcurrentDifferentBodies(t *testing.T) {
	e := newEnv(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Define(e.ctx, "one-id", cfgNamed(fmt.Sprintf("vm%d", i), uuid.New(), clockUTC))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), "already used for a different request"):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 || e.log.LastSeq() != 1 {
		t.Fatalf("%d defines succeeded, %d events; want 1 and 1", ok, e.log.LastSeq())
	}
}

// A record written without a digest (an older log) still answers a retry
// with its reply: it cannot tell requests apart, and must not break.
func TestCommandIDLegacyRecord(t *testing.T) {
	log := domainstest.NewMemLog()
	id := uuid.New()
	ev := domains.NewEvent(id, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "old", "host-a", domains.Defined{Config: cfgNamed("vm", id, clockUTC).Normalize()})
	if _, err := log.Append(context.Background(), domains.AppendRequest{Domain: id, Events: []domains.Event{ev}, CommandID: "old",
		Result: []byte(`{"domain":"` + id.String() + `","name":"vm","count":1,"state":"shut off"}`)}); err != nil {
		t.Fatal(err)
	}
	p := domains.NewProjection()
	evs, _ := log.ReadAfter(context.Background(), 0, 10)
	for _, e := range evs {
		if err := p.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	svc := owner.NewService(owner.Options{Log: log, Host: "host-a", Projection: p})
	t.Cleanup(svc.Close)
	res, err := svc.Undefine(context.Background(), "old", "vm")
	if err != nil || res.Name != "vm" || len(res.Seqs) != 1 || res.Seqs[0] != 1 || log.LastSeq() != 1 {
		t.Fatalf("legacy record: %+v %v (log at %d)", res, err, log.LastSeq())
	}
}

// A lookup of a huge name fails with a short error: replies quote a
// bounded prefix of what they name (issue 7, defects 3 and 4).
func TestNotFoundQuotesBounded(t *testing.T) {
	e := newEnv(t)
	huge := strings.Repeat("x", 700000)
	for name, do := range map[string]func() error{
		"get":     func() error { _, err := e.svc.Get(huge); return err },
		"destroy": func() error { _, err := e.svc.Destroy(e.ctx, "", huge); return err },
	} {
		err := do()
		wantCode(t, err, domains.ErrNotFound)
		if len(err.Error()) > 1024 {
			t.Fatalf("%s: error of %d bytes", name, len(err.Error()))
		}
	}
}
