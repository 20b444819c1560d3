package worker

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestThrottledRetry: a throttled or paused attempt is no failure for
// asynq, comes back no sooner than the pause left (at least a second), and
// spread over half as long again.
func TestThrottledRetry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		after    time.Duration
		min, max time.Duration
	}{
		{0, throttledDelay, throttledDelay * 3 / 2},
		{200 * time.Millisecond, throttledDelay, throttledDelay * 3 / 2},
		{4 * time.Second, 4 * time.Second, 6 * time.Second},
	} {
		err := fmt.Errorf("attempt: %w", throttled(errors.New("idasc sync: throttled: code 400504"), tt.after))
		if IsFailure(err) {
			t.Errorf("IsFailure(throttled after %v) = true, want false: it must not spend the retry budget", tt.after)
		}
		for range 50 {
			// n stays 0: asynq does not count these attempts.
			if got := RetryDelay(0, err, nil); got < tt.min || got > tt.max {
				t.Fatalf("RetryDelay(throttled after %v) = %v, want within [%v, %v]", tt.after, got, tt.min, tt.max)
			}
		}
	}
	if !IsFailure(retry(retryTransient, errors.New("x"))) || !IsFailure(retry(retryNotReady, errors.New("x"))) {
		t.Error("IsFailure: transient and not-ready attempts must spend the retry budget")
	}
}
