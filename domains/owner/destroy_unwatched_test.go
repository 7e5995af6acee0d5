package owner_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

// A guest the agent is not watching (its recovery failed) is found and
// killed by destroy before stopped is recorded; when QEMU is really gone,
// destroy records stopped alone; any other failure to find it records
// nothing.
func TestServiceDestroyUnwatchedGuest(t *testing.T) {
	cases := []struct {
		name     string
		attach   func(*domainstest.FakeDriver, domains.Config) *domainstest.FakeGuest
		wantErr  error
		wantKill bool
	}{
		{name: "found and killed", wantKill: true, attach: func(d *domainstest.FakeDriver, c domains.Config) *domainstest.FakeGuest {
			g := domainstest.NewFakeGuest(77, "kvm")
			d.SetAttachable(c.UUID, g)
			return g
		}},
		{name: "gone", attach: func(*domainstest.FakeDriver, domains.Config) *domainstest.FakeGuest { return nil }},
		{name: "monitor busy", wantErr: domains.ErrUnavailable, attach: func(d *domainstest.FakeDriver, _ domains.Config) *domainstest.FakeGuest {
			d.FailAttach(errors.New("QMP socket busy"))
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.define("vm", clockUTC)
			e.start(cfg)
			e.restart(nil) // agent down; the new one has not recovered it
			drv := domainstest.NewFakeDriver()
			g := c.attach(drv, cfg)
			e.restart(drv)
			seq := e.log.LastSeq()
			_, err := e.svc.Destroy(context.Background(), "", "vm")
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || e.log.LastSeq() != seq {
					t.Fatalf("err %v, %d events; want %v and none", err, e.log.LastSeq()-seq, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := []domains.Payload{domains.Stopped{Reason: domains.StopDestroyed}}
			if got := payloads(e.eventsAfter(seq)); !reflect.DeepEqual(got, want) {
				t.Fatalf("events %+v", got)
			}
			if c.wantKill && (g.CallCount("Kill") != 1 || !g.Exited()) {
				t.Fatalf("guest not killed: calls %v", g.Calls())
			}
		})
	}
}
