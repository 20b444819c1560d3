package workertest

import (
	"sync"
	"time"
)

// Clock is a time the test moves by hand. Every part that takes a clock
// (the fake provider's Options.Now, ticketcache's Options.Clock, the
// worker's Deps.Now) can share one, so expiry logic runs without sleeping.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
