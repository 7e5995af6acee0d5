package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// asofSvc is the live side: only Get matters to "at" requests.
type asofSvc struct {
	api.Service // nil: any other method panics, which the test would notice
	proj        *domains.Projection
}

func (s asofSvc) Get(ref string) (domains.Domain, error) {
	if d, ok := s.proj.Lookup(ref); ok {
		return d, nil
	}
	return domains.Domain{}, domains.Errorf(domains.CodeNotFound, "domain %q not found", ref)
}

// asofLog pages like the store: versions after afterVersion, up to limit.
type asofLog struct {
	events map[uuid.UUID][]domains.Event
	reads  *int
}

func (l asofLog) ReadDomain(_ context.Context, id uuid.UUID, after uint64, limit int) ([]domains.Event, error) {
	*l.reads++
	evs := l.events[id]
	if after >= uint64(len(evs)) {
		return nil, nil
	}
	evs = evs[after:]
	return evs[:min(limit, len(evs))], nil
}

func TestHandlerAt(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	web := domains.Config{Name: "web1", UUID: uuid.New(), MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	old := domains.Config{Name: "old1", UUID: uuid.New(), MemoryMiB: 32, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	big := web.Clone()
	big.MemoryMiB = 128
	script := []struct {
		id uuid.UUID
		p  domains.Payload
	}{
		{web.UUID, domains.Defined{Config: web}},                 // seq 1
		{old.UUID, domains.Defined{Config: old}},                 // seq 2
		{web.UUID, domains.ConfigUpdated{Config: big}},           // seq 3
		{old.UUID, domains.Undefined{}},                          // seq 4
		{web.UUID, domains.Started{Reason: domains.StartBooted}}, // seq 5
	}
	live := domains.NewProjection()
	log := asofLog{events: map[uuid.UUID][]domains.Event{}, reads: new(int)}
	for i, s := range script {
		e := domains.NewEvent(s.id, t0.Add(time.Duration(i)*time.Second), "", "h", s.p)
		e.Seq, e.Version = uint64(i+1), uint64(len(log.events[s.id])+1)
		log.events[s.id] = append(log.events[s.id], e)
		if err := live.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	h := api.Handler{Svc: asofSvc{proj: live}, Log: log}

	tests := []struct {
		name   string
		verb   string
		body   string
		memory uint64
		state  domains.State
		code   domains.Code
	}{
		{"now", api.VerbInfo, `{"domain":"web1"}`, 128, domains.StateRunning, ""},
		{"seq 1", api.VerbInfo, `{"domain":"web1","at":"1"}`, 64, domains.StateShutoff, ""},
		{"seq 2 (other domain)", api.VerbConfig, `{"domain":"web1","at":"2"}`, 64, "", ""},
		{"seq 4", api.VerbInfo, `{"domain":"web1","at":"4"}`, 128, domains.StateShutoff, ""},
		{"time", api.VerbInfo, `{"domain":"web1","at":"2026-05-06T07:08:11Z"}`, 128, domains.StateShutoff, ""},
		{"time before", api.VerbInfo, `{"domain":"web1","at":"2026-05-06T07:08:08Z"}`, 0, "", domains.CodeNotFound},
		{"undefined by uuid", api.VerbConfig, `{"domain":"` + old.UUID.String() + `","at":"3"}`, 32, "", ""},
		{"undefined by uuid, after", api.VerbConfig, `{"domain":"` + old.UUID.String() + `","at":"4"}`, 0, "", domains.CodeNotFound},
		{"undefined by name", api.VerbConfig, `{"domain":"old1","at":"3"}`, 0, "", domains.CodeNotFound},
		{"unknown uuid", api.VerbInfo, `{"domain":"` + uuid.NewString() + `","at":"3"}`, 0, "", domains.CodeNotFound},
		{"garbage", api.VerbInfo, `{"domain":"web1","at":"yesterday"}`, 0, "", domains.CodeInvalid},
		{"seq 0", api.VerbInfo, `{"domain":"web1","at":"0"}`, 0, "", domains.CodeInvalid},
		{"not a string", api.VerbInfo, `{"domain":"web1","at":5}`, 0, "", domains.CodeInvalid},
		{"other verbs", api.VerbUndefine, `{"domain":"web1","at":"1"}`, 0, "", domains.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := h.Handle(ctx, tc.verb, []byte(tc.body))
			if tc.code != "" {
				if domains.CodeOf(err) != tc.code {
					t.Fatalf("got %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch v := got.(type) {
			case domains.Domain:
				if v.Config.MemoryMiB != tc.memory || v.State != tc.state {
					t.Fatalf("got %d MiB %q, want %d MiB %q", v.Config.MemoryMiB, v.State, tc.memory, tc.state)
				}
			case domains.Config:
				if v.MemoryMiB != tc.memory {
					t.Fatalf("got %d MiB, want %d", v.MemoryMiB, tc.memory)
				}
			default:
				t.Fatalf("reply %T", got)
			}
		})
	}

	// Without a log reader "at" is unavailable, not silently "now".
	_, err := api.Handler{Svc: asofSvc{proj: live}}.Handle(ctx, api.VerbInfo, []byte(`{"domain":"web1","at":"1"}`))
	if !errors.Is(err, domains.ErrUnavailable) {
		t.Fatalf("no log: %v", err)
	}
}

// A long history is read page by page, and only up to the point.
func TestHandlerAtReadsOnlyWhatItNeeds(t *testing.T) {
	id := uuid.New()
	cfg := domains.Config{Name: "long1", UUID: id, MemoryMiB: 64, VCPUs: 1, Clock: domains.Clock{Offset: domains.OffsetUTC}}
	live := domains.NewProjection()
	log := asofLog{events: map[uuid.UUID][]domains.Event{}, reads: new(int)}
	for i := range 20000 {
		var p domains.Payload = domains.RTCChanged{Offset: int64(i)}
		if i == 0 {
			p = domains.Defined{Config: cfg}
		} else if i == 1 {
			p = domains.Started{Reason: domains.StartBooted}
		}
		e := domains.NewEvent(id, time.Unix(int64(i), 0), "", "h", p)
		e.Seq, e.Version = uint64(i+1), uint64(i+1)
		log.events[id] = append(log.events[id], e)
		if err := live.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	h := api.Handler{Svc: asofSvc{proj: live}, Log: log}
	got, err := h.Handle(context.Background(), api.VerbInfo, []byte(`{"domain":"long1","at":"10"}`))
	if err != nil || got.(domains.Domain).Version != 10 || *log.reads != 1 {
		t.Fatalf("got %v %v after %d reads", got, err, *log.reads)
	}
	*log.reads = 0
	got, err = h.Handle(context.Background(), api.VerbInfo, []byte(`{"domain":"long1","at":"19999"}`))
	if err != nil || got.(domains.Domain).Version != 19999 || *log.reads < 2 {
		t.Fatalf("got %v %v after %d reads", got, err, *log.reads)
	}
}
