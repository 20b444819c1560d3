package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/redisconn"
)

// retryKind tells RetryDelay how soon a failed attempt should run again.
type retryKind int

const (
	retryTransient retryKind = iota // network, provider 5xx, Redis or S3 trouble: capped exponential backoff
	retryNotReady                   // no result or evidence yet: gentler backoff, bounded by the worker's own wait
	retryRejected                   // the ticket was refused: a fresh one is on its way, retry soon
	retryThrottled                  // the provider said the app calls too fast, or the fleet's pacing made the call wait: no failure
)

// retryError asks asynq for another attempt; the kind picks the delay.
type retryError struct {
	kind  retryKind
	err   error
	after time.Duration // at least this long before the next attempt (retryThrottled: the pause left)
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retry(kind retryKind, err error) error { return &retryError{kind: kind, err: err} }

// throttled asks for another attempt no sooner than after (at least
// throttledDelay), spending nothing of the task's retry budget.
func throttled(err error, after time.Duration) error {
	return &retryError{kind: retryThrottled, err: err, after: after}
}

// isThrottled reports whether err is a throttled or paused attempt's.
func isThrottled(err error) bool {
	var re *retryError
	return errors.As(err, &re) && re.kind == retryThrottled
}

// Backoff bounds.
const (
	transientBase = time.Second
	transientCap  = time.Minute
	notReadyBase  = time.Second
	notReadyCap   = 30 * time.Second
	rejectedDelay = time.Second
	// throttledDelay is the shortest wait after a throttled or paused
	// attempt: the fleet's first pause is 1 s.
	throttledDelay = time.Second
	promptDelay    = time.Second // after a crash or a shutdown: the task did nothing wrong
)

// RetryDelay is the asynq RetryDelayFunc: it knows the worker's error
// classes. A task whose lease expired (its worker died) or that was
// cancelled by a shutdown runs again promptly instead of after asynq's
// default 15 to 45 s and more.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var re *retryError
	switch {
	case errors.Is(err, asynq.ErrLeaseExpired), errors.Is(err, context.Canceled):
		return promptDelay
	case errors.As(err, &re) && re.kind == retryThrottled:
		// asynq does not count these attempts, so n does not grow: the
		// pause left sets the delay, spread so that the app's waiting
		// tasks do not all come back in the same instant.
		d := max(re.after, throttledDelay)
		return d + rand.N(d/2+1)
	case errors.As(err, &re) && re.kind == retryRejected:
		// Soon: the fleet replaces a refused ticket at once. Backing off
		// still, for a partner's refresher (external tickets) that is slow.
		return backoff(n, rejectedDelay, notReadyCap)
	case errors.As(err, &re) && re.kind == retryNotReady:
		return backoff(n, notReadyBase, notReadyCap)
	}
	return backoff(n, transientBase, transientCap)
}

// backoff is capped exponential backoff with jitter: between half and all
// of min(cap, base*2^n).
func backoff(n int, base, max time.Duration) time.Duration {
	d := max
	if n < 30 && base<<n < max {
		d = base << n
	}
	half := d / 2
	return half + rand.N(half+1)
}

// IsFailure tells asynq which errors spend the task's retry budget: a
// cancellation by shutdown does not, nor an attempt the provider
// throttled or the fleet's pacing held back,
// nor Redis failing over (or a write it lost doing so), which passes
// once a master answers: such attempts did nothing wrong.
func IsFailure(err error) bool {
	return !errors.Is(err, context.Canceled) && !isThrottled(err) && !redisFailover(err) && !errors.Is(err, redisconn.ErrLost)
}

// redisFailover reports a failover error that came from Redis. The
// provider's and the bucket's network errors look alike (a refused
// connection) but come wrapped as HTTP errors: those spend the retry
// budget as before, so an unreachable provider still ends in a record.
func redisFailover(err error) bool {
	var pe *idasc.Error
	var ue *url.Error
	return redisconn.IsFailover(err) && !errors.As(err, &pe) && !errors.As(err, &ue)
}

// lastAttempt reports whether asynq will archive the task if this attempt
// fails, so the handler writes the final record itself instead.
func lastAttempt(ctx context.Context) bool {
	n, ok1 := asynq.GetRetryCount(ctx)
	max, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && n >= max
}
