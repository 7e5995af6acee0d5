package domainstest

import (
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York even on hosts without zoneinfo

	"github.com/vmledger/vmledger/domains"
)

// FixedClock is a domains.TimeSource that stands still until told to move.
// The zone of the time it is given is the "host's" zone for ClockBase.
type FixedClock struct {
	mu sync.Mutex
	t  time.Time
}

var _ domains.TimeSource = (*FixedClock)(nil)

// NewFixedClock returns a clock showing t.
func NewFixedClock(t time.Time) *FixedClock { return &FixedClock{t: t} }

// Now implements domains.TimeSource.
func (c *FixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *FixedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock by d and returns the new time.
func (c *FixedClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// NewYork is America/New_York (embedded tzdata, so hosts without zoneinfo
// work too): a zone with DST for ClockBase tests.
func NewYork(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
