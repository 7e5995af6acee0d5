package domainstest_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

var (
	idA = uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	idB = uuid.MustParse("0b7e7f6a-2222-4c3d-8e9f-a0b1c2d3e4f5")
	at  = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
)

func cfg(name string, id uuid.UUID) domains.Config {
	return domains.Config{Name: name, UUID: id, MemoryMiB: 64, VCPUs: 1, Machine: "pc", Clock: domains.Clock{Offset: domains.OffsetUTC}}
}

func evs(id uuid.UUID, ps ...domains.Payload) []domains.Event {
	out := make([]domains.Event, len(ps))
	for i, p := range ps {
		out[i] = domains.NewEvent(id, at, "", "h", p)
	}
	return out
}

func TestMemLogAppend(t *testing.T) {
	ctx := context.Background()
	l := domainstest.NewMemLog()
	committed := l.Committed()
	req := domains.AppendRequest{Domain: idA, ExpectedVersion: 0, CommandID: "c1", Result: []byte("r1"),
		Events: evs(idA, domains.Defined{Config: cfg("a", idA)}, domains.Started{Reason: "booted"})}
	seqs, err := l.Append(ctx, req)
	if err != nil || !reflect.DeepEqual(seqs, []uint64{1, 2}) {
		t.Fatalf("append: %v %v", seqs, err)
	}
	if req.Events[1].Seq != 2 || req.Events[1].Version != 2 {
		t.Errorf("sequences not written back: %+v", req.Events[1])
	}
	select {
	case <-committed:
	default:
		t.Error("Committed not signalled")
	}
	// Another domain continues the global sequence, at its own version 1.
	seqs, err = l.Append(ctx, domains.AppendRequest{Domain: idB, Events: evs(idB, domains.Defined{Config: cfg("b", idB)})})
	if err != nil || !reflect.DeepEqual(seqs, []uint64{3}) || l.Version(idB) != 1 || l.Version(idA) != 2 {
		t.Fatalf("append b: %v %v", seqs, err)
	}
	before := l.LastSeq()
	refused := map[string]domains.AppendRequest{
		"stale version":  {Domain: idA, ExpectedVersion: 1, Events: evs(idA, domains.Paused{Reason: "user"})},
		"future version": {Domain: idA, ExpectedVersion: 3, Events: evs(idA, domains.Paused{Reason: "user"})},
		"duplicate cmd":  {Domain: idA, ExpectedVersion: 2, CommandID: "c1", Events: evs(idA, domains.Paused{Reason: "user"})},
		"other domain":   {Domain: idA, ExpectedVersion: 2, Events: evs(idB, domains.Paused{Reason: "user"})},
		"nil domain":     {Events: evs(uuid.Nil, domains.Paused{Reason: "user"})},
		"empty":          {Domain: idA, ExpectedVersion: 2},
		"unencodable":    {Domain: idA, ExpectedVersion: 2, Events: []domains.Event{{Domain: idA, Type: domains.TypePaused, Payload: domains.Resumed{}}}},
		"half unencodable": {Domain: idA, ExpectedVersion: 2, Events: append(evs(idA, domains.Paused{Reason: "user"}),
			domains.Event{Domain: idA, Type: domains.TypeStopped})},
	}
	for name, r := range refused {
		if _, err := l.Append(ctx, r); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "stale version" || name == "future version" || name == "duplicate cmd" {
			if !errors.Is(err, domains.ErrConflict) {
				t.Errorf("%s: %v is not a conflict", name, err)
			}
		}
	}
	if l.LastSeq() != before || l.Version(idA) != 2 {
		t.Fatalf("refused appends wrote something: seq %d version %d", l.LastSeq(), l.Version(idA))
	}
	// AnyVersion skips the check; a command without events is recorded.
	if _, err := l.Append(ctx, domains.AppendRequest{Domain: idA, ExpectedVersion: domains.AnyVersion, Events: evs(idA, domains.Paused{Reason: "user"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, domains.AppendRequest{Domain: idA, ExpectedVersion: 3, CommandID: "noop", Result: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, _ := l.Command(ctx, "noop"); !ok || rec.FirstSeq != 0 || string(rec.Result) != "x" {
		t.Fatalf("command without events: %+v %v", rec, ok)
	}
	if rec, ok, err := l.Command(ctx, "c1"); err != nil || !ok || rec.FirstSeq != 1 || string(rec.Result) != "r1" {
		t.Fatalf("command c1: %+v %v %v", rec, ok, err)
	}
	rec, _, _ := l.Command(ctx, "c1")
	rec.Result[0] = 'X'
	if rec, _, _ := l.Command(ctx, "c1"); string(rec.Result) != "r1" {
		t.Fatal("Command hands out the log's own bytes")
	}
	if _, ok, _ := l.Command(ctx, "nope"); ok {
		t.Fatal("unknown command found")
	}
	if l.Appends() != 4 {
		t.Errorf("Appends = %d", l.Appends())
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cancelled, domains.AppendRequest{Domain: idA, ExpectedVersion: 3, Events: evs(idA, domains.Resumed{})}); err == nil {
		t.Error("append with a cancelled context succeeded")
	}
}

func TestMemLogRead(t *testing.T) {
	ctx := context.Background()
	l := domainstest.NewMemLog()
	l.Append(ctx, domains.AppendRequest{Domain: idA, Events: evs(idA, domains.Defined{Config: cfg("a", idA)})})
	l.Append(ctx, domains.AppendRequest{Domain: idB, Events: evs(idB, domains.Defined{Config: cfg("b", idB)})})
	l.Append(ctx, domains.AppendRequest{Domain: idA, ExpectedVersion: 1, Events: evs(idA, domains.Started{Reason: "booted"}, domains.Paused{Reason: "user"})})
	all, err := l.ReadAfter(ctx, 0, 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("ReadAfter: %d %v", len(all), err)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
	}
	if got, _ := l.ReadAfter(ctx, 1, 2); len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Errorf("ReadAfter(1, 2) = %v", got)
	}
	if got, _ := l.ReadAfter(ctx, 4, 0); len(got) != 0 {
		t.Errorf("ReadAfter(end) = %v", got)
	}
	if got, _ := l.ReadDomain(ctx, idA, 1, 0); len(got) != 2 || got[0].Version != 2 || got[1].Version != 3 {
		t.Errorf("ReadDomain = %+v", got)
	}
	raw, ok := l.Raw(3)
	if id, v, err := domains.PeekDomain(raw); !ok || err != nil || id != idA || v != 2 {
		t.Errorf("Raw(3): %s %d %v", id, v, err)
	}
	if _, ok := l.Raw(5); ok {
		t.Error("Raw(5) found")
	}
	p, err := l.Replay()
	if err != nil || p.LastSeq() != 4 || p.Len() != 2 {
		t.Fatalf("Replay: %v", err)
	}
	if d, _ := p.Get(idA); d.State != domains.StatePaused {
		t.Errorf("replayed state %q", d.State)
	}
	// Wait returns at once for what is there, and times out otherwise.
	if err := l.Wait(ctx, 4); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(short, 5); err == nil {
		t.Fatal("Wait(5) returned without the event")
	}
	done := make(chan error)
	go func() { done <- l.Wait(ctx, 5) }()
	l.Append(ctx, domains.AppendRequest{Domain: idA, ExpectedVersion: 3, Events: evs(idA, domains.Resumed{})})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.SetRelayPosition(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if pos, err := l.RelayPosition(ctx); err != nil || pos != 3 {
		t.Fatalf("relay position %d %v", pos, err)
	}
}

func TestMemLogHooks(t *testing.T) {
	ctx := context.Background()
	l := domainstest.NewMemLog()
	boom := errors.New("boom")
	l.FailAppends(boom)
	if _, err := l.Append(ctx, domains.AppendRequest{Domain: idA, Events: evs(idA, domains.Defined{Config: cfg("a", idA)})}); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	l.FailAppends(nil)
	var seen []uint64
	l.OnAppend(func(req domains.AppendRequest, seqs []uint64) { seen = append(seen, seqs...) })
	l.Append(ctx, domains.AppendRequest{Domain: idA, Events: evs(idA, domains.Defined{Config: cfg("a", idA)})})
	l.OnAppend(nil)
	l.Append(ctx, domains.AppendRequest{Domain: idA, ExpectedVersion: 1, Events: evs(idA, domains.Undefined{})})
	if !reflect.DeepEqual(seen, []uint64{1}) || l.LastSeq() != 2 {
		t.Fatalf("hook saw %v; log at %d", seen, l.LastSeq())
	}
}

func TestFakeDriver(t *testing.T) {
	ctx := context.Background()
	d := domainstest.NewFakeDriver()
	spec := domains.StartSpec{Config: cfg("a", idA), ClockBase: -18000, Paused: true}
	g1, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := g1.Status(ctx); st.Running || st.Status != "paused" {
		t.Errorf("a guest started paused reports %+v", st)
	}
	g2, _ := d.Start(ctx, domains.StartSpec{Config: cfg("b", idB)})
	if g1.PID() == g2.PID() || g1.Accel() != "kvm" {
		t.Errorf("pids %d %d accel %q", g1.PID(), g2.PID(), g1.Accel())
	}
	if st, _ := g2.Status(ctx); !st.Running {
		t.Error("a started guest does not run")
	}
	if s := d.Starts(); len(s) != 2 || !reflect.DeepEqual(s[0], spec) {
		t.Fatalf("Starts = %+v", s)
	}
	if d.Guest(idA) != g1 {
		t.Error("Guest(idA) is not the started guest")
	}
	boom := errors.New("no kvm")
	d.FailStart(boom)
	if _, err := d.Start(ctx, spec); !errors.Is(err, boom) {
		t.Fatalf("FailStart: %v", err)
	}
	if len(d.Starts()) != 3 {
		t.Error("failed Start not recorded")
	}
	if _, err := d.Attach(ctx, cfg("a", idA)); !errors.Is(err, domains.ErrNotFound) {
		t.Fatalf("Attach without a guest: %v", err)
	}
	g := domainstest.NewFakeGuest(77, "tcg")
	d.SetAttachable(idA, g)
	if got, err := d.Attach(ctx, cfg("a", idA)); err != nil || got != g {
		t.Fatalf("Attach: %v %v", got, err)
	}
	d.FailAttach(boom)
	if _, err := d.Attach(ctx, cfg("a", idA)); !errors.Is(err, boom) {
		t.Fatalf("FailAttach: %v", err)
	}
	if len(d.Attaches()) != 3 {
		t.Errorf("Attaches = %d", len(d.Attaches()))
	}
	var hooked *domainstest.FakeGuest
	d.FailStart(nil)
	d.OnStart(func(_ domains.StartSpec, g *domainstest.FakeGuest) { hooked = g })
	g3, _ := d.Start(ctx, spec)
	if hooked == nil || domains.Guest(hooked) != g3 {
		t.Error("OnStart not called with the new guest")
	}
}

func TestFakeGuest(t *testing.T) {
	ctx := context.Background()
	g := domainstest.NewFakeGuest(1, "kvm")
	if err := g.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := g.Status(ctx); st.Running || st.Status != "paused" {
		t.Errorf("after Pause: %+v", st)
	}
	g.Resume(ctx)
	if st, _ := g.Status(ctx); !st.Running {
		t.Errorf("after Resume: %+v", st)
	}
	boom := errors.New("qmp")
	g.Fail("Reset", boom)
	if err := g.Reset(ctx); !errors.Is(err, boom) {
		t.Fatalf("Reset: %v", err)
	}
	g.Fail("Reset", nil)
	if err := g.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	g.Powerdown(ctx)
	if g.CallCount("Reset") != 2 || g.CallCount("Powerdown") != 1 {
		t.Errorf("calls %v", g.Calls())
	}
	if !g.Push(domains.GuestEvent{Kind: domains.GuestRTCChange, Offset: 5}) {
		t.Fatal("Push refused")
	}
	if ev := <-g.Events(); ev.Kind != domains.GuestRTCChange || ev.Offset != 5 {
		t.Fatalf("event %+v", ev)
	}
	// Detach: the monitor closes, QEMU stays.
	g.Detach()
	if _, ok := <-g.Events(); ok || g.Exited() || !g.Detached() || g.Push(domains.GuestEvent{}) {
		t.Fatal("Detach did not close the monitor only")
	}

	k := domainstest.NewFakeGuest(2, "kvm")
	k.Push(domains.GuestEvent{Kind: domains.GuestShutdown})
	if err := k.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.Done():
	default:
		t.Fatal("Done open after Kill")
	}
	if x := k.Exit(); !x.Signaled || x.Err != domainstest.ErrKilled {
		t.Errorf("exit %+v", x)
	}
	// A hint pushed before the exit is still readable, then the channel ends.
	if ev, ok := <-k.Events(); !ok || ev.Kind != domains.GuestShutdown {
		t.Fatal("hint lost at exit")
	}
	if _, ok := <-k.Events(); ok {
		t.Fatal("events still open after exit")
	}
	k.Terminate(domains.GuestExit{Code: 3}) // a no-op now
	if k.Exit().Code == 3 {
		t.Error("second Terminate changed the exit")
	}
	if err := k.Pause(ctx); err == nil {
		t.Error("Pause on an exited guest succeeded")
	}
}

func TestFixedClock(t *testing.T) {
	c := domainstest.NewFixedClock(at)
	if !c.Now().Equal(at) {
		t.Fatal(c.Now())
	}
	if got := c.Advance(time.Hour); !got.Equal(at.Add(time.Hour)) || !c.Now().Equal(got) {
		t.Fatal(got)
	}
	c.Set(at)
	if !c.Now().Equal(at) {
		t.Fatal(c.Now())
	}
}
