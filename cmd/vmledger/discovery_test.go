package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

func srvRequest(t *testing.T, nc *nats.Conn, subj string, body []byte, v any) {
	t.Helper()
	m, err := nc.Request(subj, body, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	if v != nil {
		if err := json.Unmarshal(m.Data, v); err != nil {
			t.Fatalf("%s: %v: %s", subj, err, m.Data)
		}
	}
}

// Issue 15, point 11: history and console lookup are micro endpoints of
// the "vmledger-api" service, listed by $SRV.INFO with their subject and
// schema version; the command endpoints carry the same metadata; and
// $SRV.STATS counts each endpoint's requests and errors (micro's own
// num_errors, not only our data).
func TestMicroDiscoveryAndStats(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state")
	a.mustCLI("define", writeFile(t, dir, "web1.json", webJSON))
	nc := natsConn(t, a)

	var info micro.Info
	srvRequest(t, nc, "$SRV.INFO.vmledger-api", nil, &info)
	if info.Metadata["host"] != a.host || info.Metadata["schema_version"] != "1" {
		t.Errorf("vmledger-api metadata %v", info.Metadata)
	}
	subjects := map[string]string{"history": "vmledger.api.testhost.history", "console": "vmledger.api.testhost.console"}
	for name, subj := range subjects {
		var ep *micro.EndpointInfo
		for i := range info.Endpoints {
			if info.Endpoints[i].Name == name {
				ep = &info.Endpoints[i]
			}
		}
		if ep == nil {
			t.Errorf("$SRV.INFO lists no %s endpoint: %+v", name, info.Endpoints)
			continue
		}
		if ep.Subject != subj || ep.Metadata["subject"] != subj || ep.Metadata["schema_version"] != "1" || ep.Metadata["request"] == "" || ep.Metadata["reply"] == "" {
			t.Errorf("%s endpoint: subject %s, metadata %v", name, ep.Subject, ep.Metadata)
		}
	}
	var cmds micro.Info
	srvRequest(t, nc, "$SRV.INFO.vmledger", nil, &cmds)
	for _, ep := range cmds.Endpoints {
		if ep.Metadata["schema_version"] != "1" || ep.Metadata["subject"] != ep.Subject {
			t.Errorf("command endpoint %s metadata %v", ep.Name, ep.Metadata)
		}
	}

	// Two good requests, two refused.
	var page struct{ Events []json.RawMessage }
	srvRequest(t, nc, subjects["history"], []byte(`{"after":0}`), &page)
	if len(page.Events) != 1 {
		t.Errorf("history: %d events, want 1", len(page.Events))
	}
	srvRequest(t, nc, subjects["history"], []byte(`{"limit":-1}`), nil)
	var con struct{ Domain, Name, Out, In string }
	srvRequest(t, nc, subjects["console"], []byte(`{"domain":"web1"}`), &con)
	if con.Domain != "6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11" || con.Name != "web1" ||
		con.Out != "vmledger.console.testhost."+con.Domain+".out" || con.In != "vmledger.console.testhost."+con.Domain+".in" {
		t.Errorf("console lookup: %+v", con)
	}
	var missing struct {
		Error struct{ Code string }
	}
	srvRequest(t, nc, subjects["console"], []byte(`{"domain":"nosuch"}`), &missing)
	if missing.Error.Code != "not-found" {
		t.Errorf("console lookup of nosuch: %+v", missing)
	}

	var stats micro.Stats
	srvRequest(t, nc, "$SRV.STATS.vmledger-api", nil, &stats)
	got := map[string]micro.EndpointStats{}
	for _, e := range stats.Endpoints {
		got[e.Name] = *e
	}
	for name, want := range map[string]string{"history": "limit -1", "console": "nosuch"} {
		e := got[name]
		if e.NumRequests != 2 || e.NumErrors != 1 || !strings.Contains(e.LastError, want) {
			t.Errorf("$SRV.STATS %s: requests %d, errors %d, last error %q; want 2, 1 and one naming %q", name, e.NumRequests, e.NumErrors, e.LastError, want)
		}
	}
}
