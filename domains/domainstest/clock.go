package domainstest

import (
	"sync"
	"time"

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
