package domains_test

import (
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/domainstest"
)

func TestClockBase(t *testing.T) {
	ny := domainstest.NewYork(t)
	ist := time.FixedZone("IST", 5*3600+1800)
	west := time.FixedZone("W", -7*3600)
	winter := time.Date(2024, 1, 15, 12, 0, 0, 0, ny) // EST, -5h
	summer := time.Date(2024, 7, 15, 12, 0, 0, 0, ny) // EDT, -4h
	utc := domains.Clock{Offset: domains.OffsetUTC}
	local := domains.Clock{Offset: domains.OffsetLocaltime}
	varUTC := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisUTC}
	varNoBasis := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600}
	varLocal := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 3600, Basis: domains.BasisLocaltime}
	cases := []struct {
		name  string
		clock domains.Clock
		now   time.Time
		want  int64
	}{
		{"utc in utc", utc, t0, 0},
		{"utc in IST", utc, t0.In(ist), 0},
		{"utc in NY winter", utc, winter, 0},
		{"localtime in utc", local, t0, 0},
		{"localtime in IST", local, t0.In(ist), 19800},
		{"localtime in W", local, t0.In(west), -25200},
		{"localtime NY winter", local, winter, -18000},
		{"localtime NY summer", local, summer, -14400},
		{"localtime NY just before spring forward", local, time.Date(2024, 3, 10, 6, 59, 59, 0, time.UTC).In(ny), -18000},
		{"localtime NY at spring forward", local, time.Date(2024, 3, 10, 7, 0, 0, 0, time.UTC).In(ny), -14400},
		{"localtime NY just before fall back", local, time.Date(2024, 11, 3, 5, 59, 59, 0, time.UTC).In(ny), -14400},
		{"localtime NY at fall back", local, time.Date(2024, 11, 3, 6, 0, 0, 0, time.UTC).In(ny), -18000},
		{"variable utc in utc", varUTC, t0, 3600},
		{"variable utc NY winter", varUTC, winter, 3600},
		{"variable utc NY summer", varUTC, summer, 3600},
		{"variable utc IST", varUTC, t0.In(ist), 3600},
		{"variable no basis is utc", varNoBasis, winter, 3600},
		{"variable localtime in utc", varLocal, t0, 3600},
		{"variable localtime in IST", varLocal, t0.In(ist), 3600 + 19800},
		{"variable localtime NY winter", varLocal, winter, 3600 - 18000},
		{"variable localtime NY summer", varLocal, summer, 3600 - 14400},
		{"variable localtime NY at fall back", varLocal, time.Date(2024, 11, 3, 6, 0, 0, 0, time.UTC).In(ny), 3600 - 18000},
		{"variable negative localtime", domains.Clock{Offset: domains.OffsetVariable, Adjustment: -86400, Basis: domains.BasisLocaltime}, summer, -86400 - 14400},
	}
	for _, c := range cases {
		if got := domains.ClockBase(c.clock, c.now); got != c.want {
			t.Errorf("%s: ClockBase(%+v, %v) = %d, want %d", c.name, c.clock, c.now, got, c.want)
		}
	}
}

// TestClockBaseMeaning: QEMU starts with -rtc base = UTC now + ClockBase.
// For localtime that must show the host's wall clock, DST or not.
func TestClockBaseMeaning(t *testing.T) {
	ny := domainstest.NewYork(t)
	for _, now := range []time.Time{
		time.Date(2024, 1, 15, 12, 0, 0, 0, ny),
		time.Date(2024, 7, 15, 12, 0, 0, 0, ny),
		time.Date(2024, 3, 10, 3, 30, 0, 0, ny),
		time.Date(2024, 11, 3, 1, 30, 0, 0, ny),
	} {
		base := domains.ClockBase(domains.Clock{Offset: domains.OffsetLocaltime}, now)
		rtc := now.UTC().Add(time.Duration(base) * time.Second)
		if y, mo, d := rtc.Date(); y != now.Year() || mo != now.Month() || d != now.Day() ||
			rtc.Hour() != now.Hour() || rtc.Minute() != now.Minute() {
			t.Errorf("at %v the RTC shows %v, want the local wall clock", now, rtc)
		}
	}
}

// TestRTCAdjustment walks the libvirt adjustment0 bug: QEMU's RTC_CHANGE
// offset is relative to the base it was started with, every time.
func TestRTCAdjustment(t *testing.T) {
	const A = 86400 // the guest starts a day ahead of UTC
	start := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	k := domains.Clock{Offset: domains.OffsetVariable, Adjustment: A, Basis: domains.BasisUTC}
	base := domains.ClockBase(k, start)
	if base != A {
		t.Fatalf("base %d", base)
	}
	// QEMU's view: RTC(t) = t + base + offset; RTC_CHANGE reports offset.
	qemuOffset := func(now, set time.Time) int64 { return int64(set.Sub(now)/time.Second) - base }

	t1 := start.Add(time.Hour)
	set1 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	off1 := qemuOffset(t1, set1)
	adj1 := domains.RTCAdjustment(base, off1)
	if adj1 != A+off1 {
		t.Fatalf("RTCAdjustment(%d, %d) = %d, want A + offset", base, off1, adj1)
	}
	if got := t1.Add(time.Duration(adj1) * time.Second); !got.Equal(set1) {
		t.Fatalf("after the first change the guest would read %v, want %v", got, set1)
	}
	// A second change in the same QEMU: the offset is again relative to
	// the start base, not to adj1.
	t2 := t1.Add(2 * time.Hour)
	set2 := time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC)
	off2 := qemuOffset(t2, set2)
	adj2 := domains.RTCAdjustment(base, off2)
	if got := t2.Add(time.Duration(adj2) * time.Second); !got.Equal(set2) {
		t.Fatalf("after the second change the guest would read %v, want %v", got, set2)
	}
	if wrong := domains.RTCAdjustment(adj1, off2); wrong == adj2 {
		t.Fatal("test is vacuous: chaining adjustments gives the same answer")
	}
	if off1 == adj1 {
		t.Fatal("test is vacuous: the bare offset equals the adjustment")
	}
	// After power-off the stored adjustment (basis utc) is the next base:
	// the guest's clock continues from where it was set.
	k2 := domains.Clock{Offset: domains.OffsetVariable, Adjustment: adj2, Basis: domains.BasisUTC}
	t3 := t2.Add(48 * time.Hour)
	if got := t3.Add(time.Duration(domains.ClockBase(k2, t3)) * time.Second); !got.Equal(set2.Add(48 * time.Hour)) {
		t.Fatalf("after restart the guest reads %v", got)
	}
}

// TestRTCAdjustmentLocaltimeBasis: with basis localtime the absolute
// adjustment is UTC-based, so it does not jump an hour when DST changes
// between the RTC change and the next start.
func TestRTCAdjustmentLocaltimeBasis(t *testing.T) {
	ny := domainstest.NewYork(t)
	k := domains.Clock{Offset: domains.OffsetVariable, Adjustment: 0, Basis: domains.BasisLocaltime}
	t1 := time.Date(2024, 1, 15, 12, 0, 0, 0, ny)
	base := domains.ClockBase(k, t1)
	if base != -18000 {
		t.Fatalf("base %d", base)
	}
	set := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // the RTC's wall time
	off := int64(set.Sub(t1.UTC())/time.Second) - base
	adj := domains.RTCAdjustment(base, off)
	later := time.Date(2024, 7, 15, 12, 0, 0, 0, ny) // EDT now
	k2 := domains.Clock{Offset: domains.OffsetVariable, Adjustment: adj, Basis: domains.BasisUTC}
	got := later.UTC().Add(time.Duration(domains.ClockBase(k2, later)) * time.Second)
	if want := set.Add(later.Sub(t1)); !got.Equal(want) {
		t.Fatalf("after DST the guest reads %v, want %v", got, want)
	}
}
