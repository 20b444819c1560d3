package pacing_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/pacing"
)

// countHook counts the commands a client sends: its Redis round trips, as
// nothing here is pipelined.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkAcquireDone is the cost the worker pays on every provider call
// when no pause is in force: Acquire, then Done with an answer that is not
// throttled. It reports the Redis round trips per call.
func BenchmarkAcquireDone(b *testing.B) {
	for _, bc := range []struct {
		name string
		rate int
	}{{"no_rate_cap", 0}, {"rate_cap", pacing.MaxRate}} {
		b.Run(bc.name, func(b *testing.B) {
			db := ticketcachetest.NewDB(b)
			var h countHook
			db.Client.AddHook(&h)
			p := newPacer(b, db.Client, pacing.Config{Rate: bc.rate})
			ctx := context.Background()
			// Load the scripts, so their one-time NOSCRIPT fallback is not counted.
			if pm, err := p.Acquire(ctx, app); err != nil {
				b.Fatal(err)
			} else if _, err := pm.Done(ctx, pacing.Answered); err != nil {
				b.Fatal(err)
			}
			h.n.Store(0)
			b.ReportAllocs()
			for b.Loop() {
				pm, err := p.Acquire(ctx, app)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pm.Done(ctx, pacing.Answered); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(h.n.Load())/float64(b.N), "roundtrips/op")
		})
	}
}
