package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// exampleLog writes a small log into dir, as an agent would have: a domain
// defined, started, its guest moving its RTC, then paused. It returns the
// file's path. (An agent's log is <state-dir>/events.db.)
func exampleLog(dir string) string {
	ctx := context.Background()
	path := filepath.Join(dir, "events.db")
	s, err := store.Open(path, store.Options{InitialMmapSize: 1 << 20})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	id := uuid.MustParse("6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11")
	at := time.Date(2026, 11, 21, 6, 10, 0, 0, time.UTC)
	cfg := domains.Config{Name: "web1", UUID: id, MemoryMiB: 64, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC}}
	for i, p := range []domains.Payload{
		domains.Defined{Config: cfg},
		domains.Started{Reason: domains.StartBooted, Accel: "tcg", PID: 4242, ClockBase: 3600},
		domains.RTCChanged{Offset: 600, Adjustment: 4200},
		domains.Paused{Reason: domains.PauseUser},
	} {
		e := domains.NewEvent(id, at.Add(time.Duration(i)*time.Second), "", "node1", p)
		req := store.AppendRequest{Domain: id, ExpectedVersion: uint64(i), Events: []domains.Event{e}}
		if _, err := s.Append(ctx, req); err != nil {
			panic(err)
		}
	}
	return path
}

// A tool that replays: open the log read-only (this works only while no
// agent holds the file: OpenReadOnly fails with ErrLocked otherwise),
// iterate the events in sequence order with Replay, and fold them with the
// same projection the agent uses.
func Example_replay() {
	dir, _ := os.MkdirTemp("", "vmledger-example-")
	defer os.RemoveAll(dir)
	path := exampleLog(dir)

	s, err := store.OpenReadOnly(path, store.Options{})
	if err != nil {
		fmt.Println(err) // errors.Is(err, store.ErrLocked): an agent runs
		return
	}
	defer s.Close()

	p := domains.NewProjection()
	err = s.Replay(context.Background(), 0, func(e domains.Event) error {
		fmt.Println(e.Seq, e.Time.Format(time.TimeOnly), e.Type, "version", e.Version)
		return p.Apply(e) // events come in sequence order, as Apply needs
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	d, _ := p.Lookup("web1")
	fmt.Printf("%s: %s (%s), clock adjustment %+ds\n", d.Config.Name, d.State, d.Reason, d.Config.Clock.Adjustment)
	// Output:
	// 1 06:10:00 defined version 1
	// 2 06:10:01 started version 2
	// 3 06:10:02 rtc-changed version 3
	// 4 06:10:03 paused version 4
	// web1: paused (user), clock adjustment +4200s
}

// One domain as it stood at a past point: read its events (ReadDomain
// pages through the per-domain index) and fold them with AsOf up to a
// sequence or a time.
func Example_asOf() {
	dir, _ := os.MkdirTemp("", "vmledger-example-")
	defer os.RemoveAll(dir)
	s, err := store.OpenReadOnly(exampleLog(dir), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	id := uuid.MustParse("6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11")
	evs, err := s.ReadDomain(context.Background(), id, 0, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	atSeq2, _, _ := domains.AsOf(evs, 2, time.Time{})
	fmt.Println("at seq 2:", atSeq2.State, "adjustment", atSeq2.Config.Clock.Adjustment)
	at := time.Date(2026, 11, 21, 6, 10, 2, 500_000_000, time.UTC)
	atTime, _, _ := domains.AsOf(evs, 0, at)
	fmt.Println("at 06:10:02.5:", atTime.State, "adjustment", atTime.Config.Clock.Adjustment)
	_, existed, _ := domains.AsOf(evs, 0, at.Add(-time.Hour))
	fmt.Println("an hour earlier, defined:", existed)
	// Output:
	// at seq 2: running adjustment 3600
	// at 06:10:02.5: running adjustment 4200
	// an hour earlier, defined: false
}

// Export writes JSON Lines, one event a line; Import rebuilds a log from
// them with the same sequences, versions and times.
func ExampleExport() {
	dir, _ := os.MkdirTemp("", "vmledger-example-")
	defer os.RemoveAll(dir)
	s, err := store.OpenReadOnly(exampleLog(dir), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	var buf bytes.Buffer
	if err := store.Export(context.Background(), s, &buf); err != nil {
		fmt.Println(err)
		return
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	fmt.Printf("%d lines; the third:\n%s\n", len(lines), lines[2])

	n, err := store.Import(context.Background(), filepath.Join(dir, "copy.db"), &buf)
	fmt.Println("imported", n, err)
	// Output:
	// 4 lines; the third:
	// {"seq":3,"domain":"6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11","version":3,"type":"rtc-changed","schema":1,"time":"2026-11-21T06:10:02Z","host":"node1","payload":{"offset":600,"adjustment":4200}}
	// imported 4 <nil>
}

// Verify checks a log without an agent and reports, rather than stops at,
// what it finds.
func ExampleVerify() {
	dir, _ := os.MkdirTemp("", "vmledger-example-")
	defer os.RemoveAll(dir)
	s, err := store.OpenReadOnly(exampleLog(dir), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	rep, err := store.Verify(context.Background(), s)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("events", rep.Events, "domains", rep.Domains, "ok", rep.OK(), "problems", rep.Problems)
	// Output:
	// events 4 domains 1 ok true problems []
}
