package domains_test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// catalogueDoc returns docs/events.md's catalogue: each type's row.
func catalogueDoc(t *testing.T) map[string]string {
	t.Helper()
	section := docSection(t, "events.md", "## Catalogue")
	rows := map[string]string{}
	name := regexp.MustCompile("`([a-z-]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = line
		}
	}
	return rows
}

// TestEventRegistry checks every part of every event type, over the union
// of the code's catalogue (registry.go) and docs/events.md: the type
// string, a sample payload, the binary codec, the JSON form, the fold, and
// the docs entry naming each payload field.
func TestEventRegistry(t *testing.T) {
	docRows := catalogueDoc(t)
	all := map[string]bool{}
	for typ := range docRows {
		all[typ] = true
	}
	for _, typ := range domains.Types() {
		all[string(typ)] = true
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		typ := domains.Type(name)
		t.Run(name, func(t *testing.T) {
			if !typ.Valid() {
				t.Fatalf("docs/events.md lists %q, the code's catalogue does not", typ)
			}
			row, ok := docRows[name]
			if !ok {
				t.Fatalf("docs/events.md's catalogue has no row for %q", typ)
			}
			p := samplePayload(typ)
			if p == nil || p.EventType() != typ {
				t.Fatalf("no sample payload of type %q (samplePayload)", typ)
			}
			want := sampleEvent(typ, uint64(i)+100)

			b, err := want.MarshalBinary(nil)
			if err != nil {
				t.Fatalf("binary encode: %v", err)
			}
			got, err := domains.UnmarshalEvent(want.Seq, b)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("binary round trip: %v\n got %+v\nwant %+v", err, got, want)
			}

			js, err := json.Marshal(want)
			if err != nil {
				t.Fatalf("JSON encode: %v", err)
			}
			var back domains.Event
			if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, want) {
				t.Fatalf("JSON round trip: %v\n got %+v\nwant %+v", err, back, want)
			}
			var fields map[string]json.RawMessage
			pj, _ := json.Marshal(p)
			if err := json.Unmarshal(pj, &fields); err != nil {
				t.Fatal(err)
			}
			for f := range fields {
				if !strings.Contains(row, "`"+f+"`") {
					t.Errorf("docs/events.md's row for %q does not name payload field `%s`:\n%s", typ, f, row)
				}
			}

			foldOnto(t, typ, p)
		})
	}
}

// foldOnto applies an event of type typ to a domain in a state where the
// table allows it, with what it needs before it (a running job for a job's
// end), and checks that the projection takes it.
func foldOnto(t *testing.T, typ domains.Type, p domains.Payload) {
	t.Helper()
	cfg := fullConfig()
	prefix := []domains.Payload{domains.Defined{Config: cfg}}
	if typ == domains.TypeDefined {
		prefix = nil
	}
	if _, ok := domains.Next(domains.StateShutoff, typ); !ok {
		prefix = append(prefix, domains.Started{Reason: domains.StartBooted, PID: 7})
		if _, ok := domains.Next(domains.StateRunning, typ); !ok {
			prefix = append(prefix, domains.Paused{Reason: domains.PauseUser})
		}
	}
	switch v := p.(type) {
	case domains.JobCompleted:
		prefix = append(prefix, domains.JobStarted{ID: v.ID, Kind: v.Kind})
	case domains.JobFailed:
		prefix = append(prefix, domains.JobStarted{ID: v.ID, Kind: v.Kind})
	case domains.DeviceDetached:
		prefix = append(prefix, domains.DeviceAttached{Device: domains.Device{ID: v.ID, Driver: "virtio-rng-pci"}})
	}
	proj := domains.NewProjection()
	for i, q := range append(prefix, p) {
		e := domains.NewEvent(cfg.UUID, t0, "", "h", q)
		e.Seq, e.Version = uint64(i)+1, uint64(i)+1
		if err := proj.Apply(e); err != nil {
			t.Fatalf("fold %s (after %d events): %v", q.EventType(), i, err)
		}
	}
	d, ok := proj.Get(cfg.UUID)
	if typ == domains.TypeUndefined {
		if ok {
			t.Fatal("undefined left the domain in the projection")
		}
		return
	}
	if !ok || d.Version != uint64(len(prefix)+1) {
		t.Fatalf("after %s: domain %+v", typ, d)
	}
	switch typ {
	case domains.TypeJobStarted:
		if d.Job == nil {
			t.Fatal("job-started did not record the running job")
		}
	case domains.TypeJobCompleted, domains.TypeJobFailed, domains.TypeDeviceDetached:
		if d.Job != nil || len(d.Config.Devices) != len(cfg.Devices) {
			t.Fatalf("%s did not end what it ends: job %+v devices %+v", typ, d.Job, d.Config.Devices)
		}
	}
}
