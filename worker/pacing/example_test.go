package pacing_test

import (
	"context"
	"errors"
	"log"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/worker/pacing"
)

// errThrottled stands for the provider's "calls too fast" answer.
var errThrottled = errors.New("throttled")

// callProvider stands for one provider call.
func callProvider(context.Context) (status int, err error) { return http.StatusOK, nil }

// The worker asks for a Permit before each provider call, reports the
// answer, and gives the task back when the fleet's pacing says wait.
// (Compiled, not run: it needs a Redis.)
func ExamplePacer_Acquire() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	p, err := pacing.New(rdb, pacing.Config{Rate: 20})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	pm, err := p.Acquire(ctx, "TIDA0001")
	if pacing.IsWait(err) {
		return // give the task back for a later retry: no failure
	}
	if err != nil {
		return // Redis is unreachable: retry as for any transient error
	}
	status, err := callProvider(ctx)
	answer := pacing.Answered
	switch {
	case errors.Is(err, errThrottled) || status == http.StatusTooManyRequests:
		answer = pacing.Throttled
	case err != nil:
		answer = pacing.NoAnswer
	}
	if ch, err := pm.Done(ctx, answer); err == nil && ch.Event != pacing.Unchanged {
		log.Printf("fleet pause %s (%v)", ch.Event, ch.Pause)
	}
}
