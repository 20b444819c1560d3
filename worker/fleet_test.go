package worker_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/workertest"
	"github.com/facesync/facesync/worker/workertest/testclock"
)

// fleet starts 3 workers on one Redis (the environment's and two more,
// each with its own Pacer and ticket cache, as 3 pods are).
func fleet(t *testing.T, o workertest.Options) *workertest.Env {
	t.Helper()
	b := workertest.New(t, o)
	b.AddWorker(t)
	b.AddWorker(t)
	return b
}

// enqueueSpread enqueues n decision-only orders spread over d, as orders
// arrive, and returns their numbers.
func enqueueSpread(t *testing.T, b *workertest.Env, prefix string, n int, d time.Duration) []string {
	t.Helper()
	orders := make([]string, n)
	start := time.Now()
	for i := range orders {
		time.Sleep(time.Until(start.Add(time.Duration(i) * d / time.Duration(n))))
		orders[i] = fmt.Sprintf("%s-%02d", prefix, i)
		b.Enqueue(t, orders[i], tasks.GetFileNone)
	}
	return orders
}

func waitAllPassed(t *testing.T, b *workertest.Env, orders []string) {
	t.Helper()
	for _, o := range orders {
		if r := b.WaitFinal(t, o, 2*time.Minute); r.Status != orderstore.StatusPassed {
			t.Errorf("%s: record %+v, want passed", o, r.Decision)
		}
	}
}

// TestFleetPauseFigure is the fleet-wide pause's figure
// through the real worker: 3 workers on one Redis, the fake throttling
// every sync call of the app for 5 s, 60 orders arriving over the first
// 2 s. With the fleet-wide pause a handful of calls reach the provider
// during the window; without it (Deps.Pacer nil: each task backs off on
// its own, as before pacing) dozens do. All 60 pass either way.
//
// The switch is Deps.Pacer nil rather than a Pacer that never pauses: it
// is the worker without pacing, exactly, and what a comparison of the
// decision path's cost needs too.
func TestFleetPauseFigure(t *testing.T) {
	t.Parallel()
	const window, orders = 5 * time.Second, 60
	// One after the other, in this test's own slot: parallel subtests
	// would queue behind the package's other parallel tests.
	got := map[bool]int{}
	for _, paced := range []bool{true, false} {
		name := map[bool]string{true: "fleet-wide pause", false: "per-task backoff"}[paced]
		t.Run(name, func(t *testing.T) {
			b := fleet(t, workertest.Options{NoPacing: !paced})
			b.Fake.Throttle(appID, time.Now().Add(window))
			list := enqueueSpread(t, b, "fleet", orders, 2*time.Second)
			waitAllPassed(t, b, list)
			got[paced] = b.Fake.ThrottledCalls(appID)
			t.Logf("%s: %d calls reached the provider during its %v throttling window (3 workers, %d orders)", name, got[paced], window, orders)
		})
	}
	if t.Failed() {
		return
	}
	t.Logf("calls during a %v throttling window, 3 workers, %d orders: fleet-wide pause %d, per-task backoff %d", window, orders, got[true], got[false])
	if got[true] > 12 {
		t.Errorf("the paced fleet sent %d calls during the window, want a handful (at most 12)", got[true])
	}
	if got[false] < orders || got[false] <= 3*got[true] {
		t.Errorf("per-task backoff sent %d calls during the window, want at least one per order and far more than the paced fleet's %d", got[false], got[true])
	}
}

// TestRateCapFigure: FACESYNC_PROVIDER_RATE=20 through 3 workers: 80
// orders enqueued at once start at most 20 + 20 (one second's burst) sync
// calls in any one-second window, and the delayed calls are counted.
func TestRateCapFigure(t *testing.T) {
	t.Parallel()
	const rate, orders = 20, 80
	// Call starts are taken as the workers send them, not as the fake
	// receives them: the cap is on starts, and the way over loopback adds
	// its own jitter.
	rec := &startRecorder{next: http.DefaultTransport}
	b := fleet(t, workertest.Options{Pacing: pacing.Config{Rate: rate},
		ProviderOptions: []idasc.Option{idasc.WithHTTPClient(&http.Client{Transport: rec})}})
	list := make([]string, orders)
	for i := range list {
		list[i] = fmt.Sprintf("rate-%02d", i)
		b.Enqueue(t, list[i], tasks.GetFileNone)
	}
	waitAllPassed(t, b, list)
	starts := rec.syncStarts()
	most := testclock.MostWithin(starts, time.Second)
	span := starts[len(starts)-1].Sub(starts[0])
	delayed := counter(t, b, "facesync_provider_rate_delayed_total", appID)
	t.Logf("rate cap %d/s, 3 workers, %d orders at once: %d sync calls over %v, at most %d in any one-second window; "+
		"%v calls of the first worker delayed by the cap", rate, orders, len(starts), span.Round(time.Millisecond), most, delayed)
	if len(starts) < orders {
		t.Fatalf("%d sync calls for %d orders", len(starts), orders)
	}
	if most > 2*rate {
		t.Errorf("%d calls started within one second, want at most %d (rate %d plus a burst of %d)", most, 2*rate, rate, rate)
	}
	if delayed == 0 {
		t.Error("facesync_provider_rate_delayed_total is 0, want the calls over the cap counted")
	}
}

// startRecorder records when each sync request is sent.
type startRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	starts []time.Time
}

func (r *startRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/sync") {
		r.mu.Lock()
		r.starts = append(r.starts, time.Now())
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

func (r *startRecorder) syncStarts() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.starts)
}
