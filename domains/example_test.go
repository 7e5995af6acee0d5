package domains_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func ExampleProjection_Apply() {
	id := uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	cfg := domains.Config{
		Name: "web", UUID: id, MemoryMiB: 512, VCPUs: 1,
		Clock: domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC},
	}
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	p := domains.NewProjection()
	for i, pl := range []domains.Payload{
		domains.Defined{Config: cfg},
		domains.Started{Reason: domains.StartBooted, ClockBase: 3600},
		domains.RTCChanged{Offset: 60, Adjustment: 3660},
		domains.Stopped{Reason: domains.StopShutdown},
	} {
		e := domains.NewEvent(id, at, "", "host-a", pl)
		e.Seq, e.Version = uint64(i+1), uint64(i+1) // the log assigns these
		if err := p.Apply(e); err != nil {
			fmt.Println(err)
			return
		}
		d, _ := p.Get(id)
		fmt.Printf("seq %d %-11s -> %-8s adjustment %d\n", e.Seq, e.Type, d.State, d.Config.Clock.Adjustment)
	}
	// A shut-off domain cannot resume: the log would be corrupt.
	e := domains.NewEvent(id, at, "", "host-a", domains.Resumed{Reason: "user"})
	e.Seq, e.Version = 5, 5
	fmt.Println(errors.Is(p.Apply(e), domains.ErrCorrupt), p.LastSeq())
	// Output:
	// seq 1 defined     -> shut off adjustment 3600
	// seq 2 started     -> running  adjustment 3600
	// seq 3 rtc-changed -> running  adjustment 3660
	// seq 4 stopped     -> shut off adjustment 3660
	// true 4
}

func ExampleClockBase() {
	ny, _ := time.LoadLocation("America/New_York")
	winter := time.Date(2024, 1, 15, 12, 0, 0, 0, ny)
	summer := time.Date(2024, 7, 15, 12, 0, 0, 0, ny)
	for _, k := range []domains.Clock{
		{Offset: domains.OffsetUTC},
		{Offset: domains.OffsetLocaltime},
		{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisUTC},
		{Offset: domains.OffsetVariable, Adjustment: 600, Basis: domains.BasisLocaltime},
	} {
		fmt.Printf("%-9s %-9s winter %6d summer %6d\n", k.Offset, k.Basis, domains.ClockBase(k, winter), domains.ClockBase(k, summer))
	}
	// Output:
	// utc                 winter      0 summer      0
	// localtime           winter -18000 summer -14400
	// variable  utc       winter    600 summer    600
	// variable  localtime winter -17400 summer -13800
}

func ExampleRTCAdjustment() {
	// QEMU was started with base 600 s ahead of UTC. The guest sets its
	// clock twice; each RTC_CHANGE offset is relative to that start base.
	base := int64(600)
	fmt.Println(domains.RTCAdjustment(base, 3000))
	fmt.Println(domains.RTCAdjustment(base, -600))
	// Output:
	// 3600
	// 0
}

func ExampleNext() {
	s := domains.StateShutoff
	for _, t := range []domains.Type{domains.TypeStarted, domains.TypePaused, domains.TypePaused, domains.TypeResumed, domains.TypeStopped} {
		next, ok := domains.Next(s, t)
		fmt.Printf("%-8s + %-7s = %-8s %v\n", s, t, next, ok)
		s = next
	}
	// Output:
	// shut off + started = running  true
	// running  + paused  = paused   true
	// paused   + paused  = paused   false
	// paused   + resumed = running  true
	// running  + stopped = shut off true
}

func ExampleConfig_Validate() {
	c := domains.Config{Name: "web.1", UUID: uuid.New(), MemoryMiB: 512, VCPUs: 1}.Normalize()
	err := c.Validate()
	fmt.Println(errors.Is(err, domains.ErrInvalid), domains.CodeOf(err))
	c.Name = "web-1"
	fmt.Println(c.Validate())
	// Output:
	// true invalid
	// <nil>
}

func ExampleUnmarshalEvent() {
	id := uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	e := domains.NewEvent(id, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "cmd-1", "host-a",
		domains.RTCChanged{Offset: 60, Adjustment: 3660})
	e.Version = 3
	b, _ := e.MarshalBinary(nil) // what the store keeps under key seq 42
	got, err := domains.UnmarshalEvent(42, b)
	fmt.Println(got.Seq, got.Version, got.Type, got.Payload, err)
	_, err = domains.UnmarshalEvent(42, b[:len(b)-1])
	fmt.Println(errors.Is(err, domains.ErrCorrupt))
	dom, ver, _ := domains.PeekDomain(b)
	fmt.Println(dom, ver)
	// Output:
	// 42 3 rtc-changed {60 3660} <nil>
	// true
	// 6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60 3
}

func ExampleEvent_MarshalJSON() {
	id := uuid.MustParse("6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60")
	e := domains.NewEvent(id, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "", "host-a",
		domains.Stopped{Reason: domains.StopCrashed, Detail: "guest panicked"})
	e.Seq, e.Version = 7, 4
	b, _ := json.Marshal(e)
	fmt.Println(string(b))
	// Output:
	// {"seq":7,"domain":"6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60","version":4,"type":"stopped","schema":1,"time":"2024-01-01T00:00:00Z","host":"host-a","payload":{"reason":"crashed","detail":"guest panicked"}}
}
