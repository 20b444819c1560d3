package workertest

import (
	"time"

	"github.com/facesync/facesync/worker/workertest/testclock"
)

// Clock is the tests' one manual clock (package testclock).
type Clock = testclock.Clock

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }
