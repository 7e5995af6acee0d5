package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// Issue 14 b, the migration verbs: the real agent's embedded server lets
// only agent identities send migrate-prepare, -finish and -cancel (on
// vmledger.peer.<host>.<verb>); an operator's are refused by the server,
// and the agent does not serve them on the command subject either.
func TestCLIPeerVerbsAgentOnly(t *testing.T) {
	state := t.TempDir()
	a := startAgent(t, state)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	as := func(r bus.Role) *bus.Client {
		nc, err := bus.Connect(ctx, bareURL(a), bus.ConnectOptions{NKeyFile: filepath.Join(state, "nats-users", string(r)+".nk"),
			InboxPrefix: r.InboxPrefix(), FailFast: true})
		if err != nil {
			t.Fatalf("connect as %s: %v", r, err)
		}
		t.Cleanup(nc.Close)
		return bus.NewClient(nc, a.host)
	}
	dom := uuid.NewString()
	cfg, _ := json.Marshal(map[string]any{"name": "intruder", "uuid": dom, "memory_mib": 64, "vcpus": 1})
	bodies := map[string]any{
		api.VerbMigratePrepare: domains.MigrationPrepare{ID: "m1", Source: "elsewhere", Epoch: 1, Config: cfg},
		api.VerbMigrateFinish:  domains.MigrationFinish{ID: "m1", Domain: dom, Source: "elsewhere", Epoch: 1},
		api.VerbMigrateCancel:  domains.MigrationCancel{ID: "m1", Domain: dom, Reason: "operator says so"},
	}
	lastSeq := func() uint64 {
		var l api.ListReply
		if err := as(bus.RoleReadOnly).Call(ctx, api.VerbList, nil, &l); err != nil {
			t.Fatal(err)
		}
		return l.LastSeq
	}
	before := lastSeq()
	for _, r := range []bus.Role{bus.RoleOperator, bus.RoleConsole} {
		c := as(r)
		for _, verb := range api.PeerVerbs() {
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			err := c.CallPeer(cctx, verb, bodies[verb], nil)
			late := cctx.Err()
			ccancel()
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "refused by the NATS server") || late != nil {
				t.Fatalf("%s %s: %v (deadline passed: %v), want a fast refusal by the server", r, verb, err, late)
			}
			if err := c.Call(ctx, verb, bodies[verb], nil); !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), "agent to agent only") {
				t.Fatalf("%s %s on the command subject: %v, want a refusal", r, verb, err)
			}
		}
	}
	if after := lastSeq(); after != before {
		t.Fatalf("refused migration verbs appended events: last seq %d, before %d", after, before)
	}
	if err := as(bus.RoleReadOnly).Call(ctx, api.VerbInfo, api.DomainRequest{Domain: dom}, nil); !errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("info of the domain a refused prepare named: %v, want not found", err)
	}

	// The agent identity gets through to the migration service, whose
	// answers show it was served: a migration it does not know is not
	// finished but released, there is no such incoming migration to
	// cancel, a source cannot be this host.
	ag := as(bus.RoleAgent)
	var fin domains.MigrationFinished
	if err := ag.CallPeer(ctx, api.VerbMigrateFinish, bodies[api.VerbMigrateFinish], &fin); err != nil || fin.Finished || fin.Release == nil {
		t.Fatalf("agent migrate-finish: %+v, %v, want a release from the service", fin, err)
	}
	if err := ag.CallPeer(ctx, api.VerbMigrateCancel, bodies[api.VerbMigrateCancel], nil); !errors.Is(err, domains.ErrNotFound) || !strings.Contains(err.Error(), "no incoming migration") {
		t.Fatalf("agent migrate-cancel: %v, want not found from the service", err)
	}
	self := domains.MigrationPrepare{ID: "m1", Source: a.host, Epoch: 1, Config: cfg}
	if err := ag.CallPeer(ctx, api.VerbMigratePrepare, self, nil); !errors.Is(err, domains.ErrInvalid) || !strings.Contains(err.Error(), "must be another host") {
		t.Fatalf("agent migrate-prepare from itself: %v, want the service's refusal", err)
	}
}
