package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func TestAppendReadReplay(t *testing.T) {
	tests := []struct {
		name    string
		domains int
		rounds  int
		perReq  int
	}{
		{"one domain one event", 1, 1, 1},
		{"one domain many appends", 1, 20, 3},
		{"interleaved domains", 5, 10, 2},
		{"big append", 2, 1, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, Options{})
			gens := make([]*gen, tc.domains)
			for i := range gens {
				gens[i] = newGen(i)
			}
			var all []domains.Event
			for r := 0; r < tc.rounds; r++ {
				for _, g := range gens {
					before := uint64(g.n)
					evs := g.batch(tc.perReq, "")
					seqs := mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: before, Events: evs})
					for i := range evs {
						if evs[i].Seq != seqs[i] || evs[i].Version != before+uint64(i)+1 {
							t.Fatalf("event %d written back as seq %d version %d, want %d, %d",
								i, evs[i].Seq, evs[i].Version, seqs[i], before+uint64(i)+1)
						}
						if want := uint64(len(all) + 1); seqs[i] != want {
							t.Fatalf("seq %d, want %d", seqs[i], want)
						}
						all = append(all, evs[i])
					}
				}
			}
			if got := s.LastSeq(); got != uint64(len(all)) {
				t.Fatalf("LastSeq %d, want %d", got, len(all))
			}
			got, err := s.ReadAfter(ctx, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, got, all)
			got, err = s.ReadAfter(ctx, 1, 2)
			if err != nil {
				t.Fatal(err)
			}
			sameEvents(t, got, all[1:min(3, len(all))])

			var replayed []domains.Event
			if err := s.Replay(ctx, 0, func(e domains.Event) error { replayed = append(replayed, e); return nil }); err != nil {
				t.Fatal(err)
			}
			sameEvents(t, replayed, all)

			p, err := LoadProjection(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if p.LastSeq() != uint64(len(all)) || p.Len() != tc.domains {
				t.Fatalf("projection at %d with %d domains", p.LastSeq(), p.Len())
			}
			for _, g := range gens {
				v, err := s.DomainVersion(ctx, g.id)
				if err != nil || v != uint64(g.n) {
					t.Fatalf("DomainVersion %d, %v; want %d", v, err, g.n)
				}
			}
		})
	}
}

func TestReplayLarge(t *testing.T) {
	// More than one replay chunk, stopped early by fn, and from the middle.
	ctx := context.Background()
	s := openTest(t, Options{NoSync: true})
	g := newGen(1)
	total := replayChunk + 17
	for v := 0; v < total; v += 1000 {
		n := min(1000, total-v)
		mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: uint64(v), Events: g.batch(n, "")})
	}
	tests := []struct {
		after, stopAt, want uint64
	}{
		{0, 0, uint64(total)},
		{replayChunk - 1, 0, uint64(total) - replayChunk + 1},
		{5, 10000, 10000 - 5},
		{uint64(total), 0, 0},
	}
	stop := errors.New("stop")
	for _, tc := range tests {
		var n, last uint64 = 0, tc.after
		err := s.Replay(ctx, tc.after, func(e domains.Event) error {
			if e.Seq != last+1 {
				t.Fatalf("seq %d after %d", e.Seq, last)
			}
			last = e.Seq
			n++
			if e.Seq == tc.stopAt {
				return stop
			}
			return nil
		})
		if tc.stopAt != 0 && !errors.Is(err, stop) || tc.stopAt == 0 && err != nil {
			t.Fatalf("after %d: %v", tc.after, err)
		}
		if n != tc.want {
			t.Fatalf("after %d: %d events, want %d", tc.after, n, tc.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Replay(cctx, 0, func(domains.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled replay: %v", err)
	}
}

func TestVersionConflicts(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	a, b := newGen(1), newGen(2)
	mustAppend(t, s, AppendRequest{Domain: a.id, Events: a.batch(2, "")})
	tests := []struct {
		name     string
		g        *gen
		expected uint64
		conflict bool
	}{
		{"new domain must be at 0", b, 3, true},
		{"stale version", a, 1, true},
		{"future version", a, 5, true},
		{"current version", a, 2, false},
		{"any version", a, AnyVersion, false},
		{"any version new domain", b, AnyVersion, false},
		{"new domain at 0 again", b, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.LastSeq()
			v0, _ := s.DomainVersion(ctx, tc.g.id)
			n := tc.g.n
			evs := tc.g.batch(2, "")
			seqs, err := s.Append(ctx, AppendRequest{Domain: tc.g.id, ExpectedVersion: tc.expected, Events: evs})
			if tc.conflict {
				tc.g.n = n // nothing was appended: produce these events again
				if !errors.Is(err, ErrVersionConflict) || !errors.Is(err, domains.ErrConflict) || errors.Is(err, ErrDuplicateCommand) {
					t.Fatalf("err %v, want version conflict", err)
				}
				if s.LastSeq() != before {
					t.Fatalf("conflicting append moved LastSeq")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.ReadDomain(ctx, tc.g.id, v0, 0)
			if err != nil || len(got) != 2 || got[0].Version != v0+1 || got[1].Seq != seqs[1] {
				t.Fatalf("ReadDomain after %d: %v %v", v0, got, err)
			}
		})
	}
}

func TestConflictsInOneBatch(t *testing.T) {
	ctx := context.Background()
	g8 := newGate()
	s := openTest(t, Options{Observer: g8})
	t.Cleanup(func() { close(g8.hold) })
	a, b := newGen(1), newGen(2)

	// Hold the writer after a first commit, queue five appends, release:
	// they are committed as one batch, in queue order.
	go func() {
		if _, err := s.Append(ctx, AppendRequest{Domain: b.id, Events: b.batch(1, "")}); err != nil {
			t.Error(err)
		}
	}()
	<-g8.batches
	a1, a2, a3 := a.batch(2, ""), a.batch(1, ""), a.batch(1, "")
	reqs := []struct {
		req  AppendRequest
		want error
	}{
		{AppendRequest{Domain: a.id, ExpectedVersion: 0, Events: a1, CommandID: "c1"}, nil},
		{AppendRequest{Domain: a.id, ExpectedVersion: 0, Events: a2}, ErrVersionConflict}, // a is at 2 now
		{AppendRequest{Domain: a.id, ExpectedVersion: 2, Events: a2}, nil},
		{AppendRequest{Domain: b.id, ExpectedVersion: 1, Events: b.batch(1, ""), CommandID: "c1"}, ErrDuplicateCommand},
		{AppendRequest{Domain: a.id, ExpectedVersion: AnyVersion, Events: a3}, nil}, // rebased to 4
	}
	errs := make([]chan error, len(reqs))
	for i, r := range reqs {
		errs[i] = make(chan error, 1)
		go func() {
			_, err := s.Append(ctx, r.req)
			errs[i] <- err
		}()
		waitQueued(t, s, i+1)
	}
	g8.hold <- struct{}{} // release the first commit
	if n := <-g8.batches; n != len(reqs) {
		t.Fatalf("batch of %d, want %d", n, len(reqs))
	}
	g8.hold <- struct{}{}
	for i, r := range reqs {
		if err := <-errs[i]; !errors.Is(err, r.want) || (r.want == nil) != (err == nil) {
			t.Fatalf("request %d: err %v, want %v", i, err, r.want)
		}
	}
	got, err := s.ReadDomain(ctx, a.id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[3].Version != 4 || got[3].Type != domains.TypeResumed || s.LastSeq() != 5 {
		t.Fatalf("domain a: %d events, last %+v; LastSeq %d", len(got), got[len(got)-1], s.LastSeq())
	}
}

func TestCommandIDs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	g := newGen(1)
	seqs := mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(2, "cmd-1"), CommandID: "cmd-1", Result: []byte(`{"ok":1}`)})
	tests := []struct {
		name    string
		req     AppendRequest
		wantErr error
	}{
		{"retry is refused", AppendRequest{Domain: g.id, ExpectedVersion: 2, Events: g.batch(1, "cmd-1"), CommandID: "cmd-1"}, ErrDuplicateCommand},
		{"retry with stale version is a duplicate too", AppendRequest{Domain: g.id, ExpectedVersion: AnyVersion, Events: g.batch(1, "cmd-1"), CommandID: "cmd-1"}, ErrDuplicateCommand},
		{"command without events", AppendRequest{Domain: g.id, ExpectedVersion: 2, CommandID: "cmd-2", Result: []byte("noop")}, nil},
		{"nothing at all", AppendRequest{Domain: g.id}, domains.ErrInvalid},
		{"nil domain", AppendRequest{Events: g.batch(1, "")}, domains.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.LastSeq()
			_, err := s.Append(ctx, tc.req)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && s.LastSeq() != before {
				t.Fatal("refused append wrote events")
			}
			if errors.Is(tc.wantErr, ErrDuplicateCommand) && !errors.Is(err, domains.ErrConflict) {
				t.Fatalf("duplicate is not conflict-coded: %v", err)
			}
		})
	}
	for _, c := range []struct {
		id     string
		found  bool
		result string
		first  uint64
	}{{"cmd-1", true, `{"ok":1}`, seqs[0]}, {"cmd-2", true, "noop", 0}, {"cmd-3", false, "", 0}} {
		res, found, err := s.Command(ctx, c.id)
		if err != nil || found != c.found || string(res) != c.result {
			t.Fatalf("Command(%s) = %q, %v, %v", c.id, res, found, err)
		}
		rec, found, err := s.EventLog().Command(ctx, c.id)
		if err != nil || found != c.found || rec.FirstSeq != c.first || string(rec.Result) != c.result {
			t.Fatalf("EventLog().Command(%s) = %+v, %v, %v", c.id, rec, found, err)
		}
	}
}

func TestSnapshotsAndRelay(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	if _, _, err := s.LatestSnapshot(ctx); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("empty store: %v", err)
	}
	if err := s.SaveSnapshot(ctx, 1, []byte("x")); !errors.Is(err, domains.ErrInvalid) {
		t.Fatalf("snapshot beyond the log: %v", err)
	}
	g := newGen(1)
	mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(5, "")})
	for _, seq := range []uint64{2, 4, 3, 5} {
		if err := s.SaveSnapshot(ctx, seq, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	seq, data, err := s.LatestSnapshot(ctx)
	if err != nil || seq != 5 || string(data) != "\x05" {
		t.Fatalf("latest = %d %q %v", seq, data, err)
	}
	snaps, err := s.snapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[1].seq != 4 {
		t.Fatalf("kept %+v, %v; want 5 and 4", snaps, err)
	}

	if pos, err := s.RelayPosition(ctx); pos != 0 || err != nil {
		t.Fatalf("initial relay position %d %v", pos, err)
	}
	for _, tc := range []struct {
		seq     uint64
		wantErr error
	}{{3, nil}, {5, nil}, {6, domains.ErrInvalid}} {
		err := s.SetRelayPosition(ctx, tc.seq)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Fatalf("SetRelayPosition(%d): %v", tc.seq, err)
		}
	}
	if pos, err := s.RelayPosition(ctx); pos != 5 || err != nil {
		t.Fatalf("relay position %d %v", pos, err)
	}
}

func TestReadDomainPaging(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	gens := []*gen{newGen(1), newGen(2), newGen(3)}
	for r := 0; r < 25; r++ {
		for _, g := range gens {
			v := uint64(g.n) // read before g.batch advances it
			mustAppend(t, s, AppendRequest{Domain: g.id, ExpectedVersion: v, Events: g.batch(1, "")})
		}
	}
	for _, limit := range []int{1, 7, 10, 25, 100} {
		for _, g := range gens {
			var after uint64
			for {
				page, err := s.ReadDomain(ctx, g.id, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > limit {
					t.Fatalf("page of %d, limit %d", len(page), limit)
				}
				for _, e := range page {
					if e.Domain != g.id || e.Version != after+1 {
						t.Fatalf("limit %d: got %s v%d after v%d", limit, e.Domain, e.Version, after)
					}
					after = e.Version
				}
			}
			if after != 25 {
				t.Fatalf("limit %d: paged up to %d", limit, after)
			}
		}
	}
	if page, err := s.ReadDomain(ctx, uuid.New(), 0, 10); err != nil || len(page) != 0 {
		t.Fatalf("unknown domain: %v %v", page, err)
	}
	if page, err := s.ReadDomain(ctx, gens[0].id, ^uint64(0), 10); err != nil || len(page) != 0 {
		t.Fatalf("after the last possible version: %v %v", page, err)
	}
	if page, err := s.ReadAfter(ctx, ^uint64(0), 10); err != nil || len(page) != 0 {
		t.Fatalf("after the last possible sequence: %v %v", page, err)
	}
}

func TestCommittedFires(t *testing.T) {
	s := openTest(t, Options{})
	ch := s.Committed()
	select {
	case <-ch:
		t.Fatal("fired before any commit")
	default:
	}
	g := newGen(1)
	mustAppend(t, s, AppendRequest{Domain: g.id, Events: g.batch(1, "")})
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Committed did not fire")
	}
	if s.Committed() == ch {
		t.Fatal("channel not replaced after the commit")
	}
}
