package pacing_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/workertest/testclock"
)

// fleetRun is the outcome of one fleet against a throttling window.
type fleetRun struct {
	inWindow int // calls the fake received during the window
	passed   int32
	errs     []error
}

// runFleet sends orders sync calls for appID from pods × perPod goroutines
// (one order each, arriving spread over the window's first two seconds)
// while the fake throttles the app for window. With pods, every call asks
// its pod's Pacer first and reports its answer; without, each order retries
// on its own capped exponential backoff with jitter, as a per-task retry
// policy does.
func runFleet(t *testing.T, srv *idasctest.Server, appID, secret string, pods []*pacing.Pacer, perPod int, window time.Duration) fleetRun {
	t.Helper()
	ctx := context.Background()
	c := idasc.New(srv.URL)
	tok, err := c.AccessToken(ctx, appID, secret)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := c.SignTicket(ctx, appID, tok.Value)
	if err != nil {
		t.Fatal(err)
	}
	orders := 3 * perPod
	if len(pods) > 0 {
		orders = len(pods) * perPod
	}
	var (
		run fleetRun
		mu  sync.Mutex
		wg  sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		run.errs = append(run.errs, err)
	}
	srv.Throttle(appID, time.Now().Add(window))
	start := time.Now()
	for i := range orders {
		wg.Go(func() {
			time.Sleep(time.Until(start.Add(time.Duration(i) * 2 * time.Second / time.Duration(orders))))
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			req := idasc.SyncRequest{AppID: appID, OrderNo: "fleet" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Ticket: tk.Value}
			for attempt := 0; ; attempt++ {
				var pm pacing.Permit
				if len(pods) > 0 {
					var aerr error
					if pm, aerr = pods[i%len(pods)].Acquire(ctx, appID); aerr != nil {
						fail(aerr)
						return
					}
				}
				_, err := c.Sync(ctx, req)
				if len(pods) > 0 {
					a := pacing.Answered
					if idasc.IsThrottled(err) {
						a = pacing.Throttled
					}
					if _, derr := pm.Done(ctx, a); derr != nil {
						fail(derr)
						return
					}
				}
				switch {
				case err == nil:
					atomic.AddInt32(&run.passed, 1)
					return
				case !idasc.IsThrottled(err):
					fail(err)
					return
				case len(pods) == 0:
					backoff := min(200*time.Millisecond<<attempt, 3200*time.Millisecond)
					time.Sleep(backoff/2 + rand.N(backoff/2))
				}
			}
		})
	}
	wg.Wait()
	run.inWindow = srv.ThrottledCalls(appID)
	return run
}

// TestFleetPauseFigure is the fleet-wide pause's figure: 3
// pods of 20 workers, 60 orders, a provider throttling every call for 5 s.
// A paused fleet sends a handful of calls during the window; orders
// retrying on their own send dozens. Every order passes either way.
func TestFleetPauseFigure(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	const paced, naive, secret = "TIDAPACED", "TIDANAIVE", "s3cret"
	srv := idasctest.NewServer(t, idasctest.Options{Apps: map[string]string{paced: secret, naive: secret}})
	pods := []*pacing.Pacer{
		newPacer(t, db.Client, pacing.Config{}), newPacer(t, db.Client, pacing.Config{}), newPacer(t, db.Client, pacing.Config{}),
	}
	const window = 5 * time.Second
	var withPause, without fleetRun
	var wg sync.WaitGroup
	wg.Go(func() { withPause = runFleet(t, srv, paced, secret, pods, 20, window) })
	wg.Go(func() { without = runFleet(t, srv, naive, secret, nil, 20, window) })
	wg.Wait()

	t.Logf("calls reaching the provider during a %v throttling window, 3 pods x 20 workers, 60 orders: "+
		"fleet-wide pause %d, per-task backoff %d", window, withPause.inWindow, without.inWindow)
	for name, r := range map[string]fleetRun{"paced": withPause, "per-task backoff": without} {
		for _, err := range r.errs {
			t.Errorf("%s fleet: %v", name, err)
		}
		if r.passed != 60 {
			t.Errorf("%s fleet: %d of 60 orders passed, want all", name, r.passed)
		}
	}
	// The first call starts the pause; the orders arriving later wait, and
	// only the probes (at 1 s and 3 s) reach the provider until it stops
	// throttling. A few calls may be in flight together with the first.
	if withPause.inWindow > 12 {
		t.Errorf("paced fleet sent %d calls during the window, want a handful (at most 12)", withPause.inWindow)
	}
	if without.inWindow < 60 || without.inWindow <= 3*withPause.inWindow {
		t.Errorf("per-task backoff sent %d calls during the window, want at least one per order and far more than the paced fleet's %d",
			without.inWindow, withPause.inWindow)
	}
}

// TestRateCap runs 3 pods of 10 goroutines calling as fast as the cap of
// 20 calls per second lets them, for 3 s: in any one-second window at most
// 20 + 20 (the burst) calls start.
func TestRateCap(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	const rate = 20
	var delayed atomic.Int32
	cfg := pacing.Config{Rate: rate, RateDelayFunc: func(appID string) {
		if appID == app {
			delayed.Add(1)
		}
	}}
	pods := []*pacing.Pacer{newPacer(t, db.Client, cfg), newPacer(t, db.Client, cfg), newPacer(t, db.Client, cfg)}
	var (
		mu     sync.Mutex
		starts []time.Time
		wg     sync.WaitGroup
	)
	end := time.Now().Add(3 * time.Second)
	for i := range 30 {
		wg.Go(func() {
			ctx, cancel := context.WithDeadline(context.Background(), end)
			defer cancel()
			for {
				pm, err := pods[i%3].Acquire(ctx, app)
				if err != nil {
					return // the run's end
				}
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
				if _, err := pm.Done(ctx, pacing.Answered); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	most := testclock.MostWithin(starts, time.Second)
	span := starts[len(starts)-1].Sub(starts[0])
	t.Logf("rate cap %d/s, 3 pods x 10 workers for 3 s: %d calls over %v, at most %d in any one-second window; %d calls delayed",
		rate, len(starts), span.Round(time.Millisecond), most, delayed.Load())
	if most > 2*rate {
		t.Errorf("%d calls started within one second, want at most %d (rate %d plus a burst of %d)", most, 2*rate, rate, rate)
	}
	if delayed.Load() == 0 {
		t.Error("no call was delayed by the cap, want many (30 workers call as fast as they can)")
	}
	if len(starts) > rate*(int(span/time.Second)+2) {
		t.Errorf("%d calls over %v, want at most rate x (T + 1)", len(starts), span)
	}
}
