// Package testclock is the one manual clock of facesync's tests: a time
// that moves only when the test says. Every part that takes a clock (the
// fake provider's Options.Now, ticketcache's Options.Clock, the pacer's
// Config.Now, the worker's Deps.Now) can share one, so expiry logic runs
// without sleeping. It imports nothing of facesync, so the tests of every
// package (the fake provider's own included) can use it; workertest
// re-exports it.
package testclock

import (
	"slices"
	"sync"
	"time"
)

// Clock is a time the test moves by hand; safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a Clock at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

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

// MostWithin returns the largest number of the times that fall within any
// window shorter than d (a rate cap's check: at most so many calls in any
// second). It sorts times.
func MostWithin(times []time.Time, d time.Duration) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
