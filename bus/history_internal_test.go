package bus

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// fill appends n events round-robin over doms; every third is "paused",
// the rest "rtc-changed", so type filters have something to bite on.
func fill(t *testing.T, n int, doms ...uuid.UUID) *bustest.Store {
	t.Helper()
	st := bustest.NewStore()
	for i := range n {
		e := bustest.Event(doms[i%len(doms)], "h", int64(i))
		if i%3 == 2 {
			e = domains.NewEvent(e.Domain, e.Time, "", "h", domains.Paused{Reason: domains.PauseUser})
		}
		if _, err := st.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestServePage(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	st := fill(t, 3000, a, b)
	big := pageLimits{soft: 1 << 20, maxPayload: 1 << 20}
	tests := []struct {
		name      string
		req       string
		lim       pageLimits
		wantN     int
		wantFirst uint64
		wantNext  uint64
		wantMore  bool
		check     func(domains.Event) bool
	}{
		{"default limit", `{}`, big, DefaultHistoryLimit, 1, 1000, true, nil},
		{"after and limit", `{"after":2990,"limit":5}`, big, 5, 2991, 2995, true, nil},
		{"tail", `{"after":2990,"limit":50}`, big, 10, 2991, 3000, false, nil},
		{"past the end", `{"after":5000}`, big, 0, 0, 5000, false, nil},
		{"limit clamped", `{"limit":1000000}`, pageLimits{soft: 1 << 30, maxPayload: 1 << 30}, 3000, 1, 3000, false, nil},
		{"byte bound cuts the page", `{"limit":1000}`, pageLimits{soft: 4096, maxPayload: 8192}, -1, 1, 0, true, nil},
		{"domain filter", `{"domain":"` + a.String() + `","limit":10}`, big, 10, 1, 19, true,
			func(e domains.Event) bool { return e.Domain == a }},
		{"empty domain means any", `{"domain":"","limit":3}`, big, 3, 1, 3, true, nil},
		{"type filter", `{"types":["paused"],"limit":4}`, big, 4, 3, 12, true,
			func(e domains.Event) bool { return e.Type == domains.TypePaused }},
		{"both filters", `{"domain":"` + b.String() + `","types":["paused"],"after":2900}`, big, 17, 2904, 3000, false,
			func(e domains.Event) bool { return e.Domain == b && e.Type == domains.TypePaused }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := servePage(context.Background(), st, []byte(tc.req), tc.lim)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) > tc.lim.soft {
				t.Fatalf("reply is %d bytes, limit %d", len(out), tc.lim.soft)
			}
			var p HistoryPage
			if err := json.Unmarshal(out, &p); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if tc.wantN >= 0 && len(p.Events) != tc.wantN {
				t.Fatalf("%d events, want %d", len(p.Events), tc.wantN)
			}
			if tc.wantN < 0 && (len(p.Events) < 2 || p.Next != p.Events[len(p.Events)-1].Seq) {
				t.Fatalf("byte-bound page: %d events, next %d", len(p.Events), p.Next)
			}
			if len(p.Events) > 0 && p.Events[0].Seq != tc.wantFirst {
				t.Errorf("first seq %d, want %d", p.Events[0].Seq, tc.wantFirst)
			}
			if tc.wantNext != 0 && p.Next != tc.wantNext {
				t.Errorf("next %d, want %d", p.Next, tc.wantNext)
			}
			if p.More != tc.wantMore || p.LastSeq != 3000 {
				t.Errorf("more=%v last_seq=%d, want more=%v last_seq=3000", p.More, p.LastSeq, tc.wantMore)
			}
			for i, e := range p.Events {
				if i > 0 && e.Seq <= p.Events[i-1].Seq {
					t.Fatalf("out of order at %d", i)
				}
				if tc.check != nil && !tc.check(e) {
					t.Fatalf("event %d does not match the filter", e.Seq)
				}
			}
		})
	}
}

// Paging by Next with a tight byte bound walks the whole log exactly once.
func TestServePageWalk(t *testing.T) {
	st := fill(t, 2500, uuid.New())
	var after uint64
	var seqs []uint64
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("no progress")
		}
		req, _ := json.Marshal(HistoryRequest{After: after, Limit: MaxHistoryLimit})
		out, err := servePage(context.Background(), st, req, pageLimits{soft: 16 << 10, maxPayload: 32 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var p HistoryPage
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			seqs = append(seqs, e.Seq)
		}
		after = p.Next
		if !p.More {
			break
		}
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seq #%d = %d", i, s)
		}
	}
	if len(seqs) != 2500 {
		t.Fatalf("%d events", len(seqs))
	}
}

func TestServePageErrors(t *testing.T) {
	st := fill(t, 10, uuid.New())
	tests := []struct {
		name string
		req  string
		lim  pageLimits
		code domains.Code
	}{
		{"not json", `{after:1`, pageLimits{1 << 20, 1 << 20}, domains.CodeInvalid},
		{"bad domain", `{"domain":"vm-1"}`, pageLimits{1 << 20, 1 << 20}, domains.CodeInvalid},
		{"bad type", `{"types":["exploded"]}`, pageLimits{1 << 20, 1 << 20}, domains.CodeInvalid},
		{"negative limit", `{"limit":-1}`, pageLimits{1 << 20, 1 << 20}, domains.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := servePage(context.Background(), st, []byte(tc.req), tc.lim)
			if got := domains.CodeOf(err); err == nil || got != tc.code {
				t.Fatalf("err = %v (code %s), want code %s", err, got, tc.code)
			}
		})
	}
	st.FailReads(errors.New("io"))
	if _, err := servePage(context.Background(), st, []byte(`{}`), pageLimits{1 << 20, 1 << 20}); !errors.Is(err, domains.ErrInternal) {
		t.Fatalf("read failure: %v", err)
	}
}

// One event bigger than the soft bound still goes out, alone.
func TestServePageOversizedEventAlone(t *testing.T) {
	st := fill(t, 5, uuid.New())
	out, err := servePage(context.Background(), st, []byte(`{}`), pageLimits{soft: 100, maxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var p HistoryPage
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 1 || p.Next != 1 || !p.More {
		t.Fatalf("got %d events, next %d, more %v; want one event, next 1, more", len(p.Events), p.Next, p.More)
	}
}

func TestPageBytes(t *testing.T) {
	tests := []struct {
		configured int
		maxPayload int64
		want       pageLimits
	}{
		{0, 1 << 20, pageLimits{soft: 512 << 10, maxPayload: 1 << 20}},
		{2 << 20, 1 << 20, pageLimits{soft: 1<<20 - 4<<10, maxPayload: 1 << 20}},
		{64 << 10, 8 << 20, pageLimits{soft: 64 << 10, maxPayload: 8 << 20}},
	}
	for _, tc := range tests {
		if got := pageBytes(tc.configured, tc.maxPayload); got != tc.want {
			t.Errorf("pageBytes(%d, %d) = %+v, want %+v", tc.configured, tc.maxPayload, got, tc.want)
		}
	}
}

// Issue 7, defect 3: an event an older log holds that no reply can carry
// (1.8 MB of JSON against a 1 MiB max payload) comes as its placeholder,
// alone on its page, with the events around it whole: history pages on
// past it instead of failing at it forever.
func TestServePageReplacesOversizeEvent(t *testing.T) {
	dom := uuid.New()
	st := bustest.NewStore()
	big := bustest.BigDefined(dom, "h", "big", 300<<10)
	if b, _ := json.Marshal(big); len(b) < 1800<<10 {
		t.Fatalf("test event is only %d bytes of JSON", len(b))
	}
	for _, e := range []domains.Event{bustest.Event(dom, "h", 1), big, bustest.Event(dom, "h", 3)} {
		if _, err := st.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	lim := pageBytes(0, 1<<20)
	var got []domains.Event
	var after uint64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("no progress")
		}
		req, _ := json.Marshal(HistoryRequest{After: after})
		out, err := servePage(context.Background(), st, req, lim)
		if err != nil {
			t.Fatalf("page after %d: %v", after, err)
		}
		if len(out) > 1<<20 {
			t.Fatalf("reply of %d bytes exceeds the max payload", len(out))
		}
		var p HistoryPage // its UnmarshalJSON decodes placeholders
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("%v: %.500s", err, out)
		}
		got = append(got, p.Events...)
		after = p.Next
		if !p.More {
			break
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d events, want 3", len(got))
	}
	tr, ok := got[1].Payload.(Truncated)
	if !ok || got[1].Seq != 2 || got[1].Type != domains.TypeDefined || got[1].Domain != dom || tr.Bytes < 1800<<10 || tr.MaxPayload != 1<<20 {
		t.Fatalf("event 2 = %+v, want the placeholder of the 1.8 MB defined event", got[1])
	}
	for _, i := range []int{0, 2} {
		if _, ok := got[i].Payload.(domains.RTCChanged); !ok {
			t.Errorf("event %d = %+v, want it whole", got[i].Seq, got[i])
		}
	}
}
