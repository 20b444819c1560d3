package ticketcache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
)

const (
	pods         = 8
	perPod       = 50
	fleetMaxAge  = 20 * time.Minute
	fleetPeriods = 4
	stepsPerAge  = 30 // clock steps per MaxAge: 40 s each, under the provider's overlap
)

// fleet is pods caches on one real Redis database, each with a client and a
// metrics registry of its own, sharing a clock and a provider model.
type fleet struct {
	db    *ticketcachetest.DB
	clock *fakeClock
	prov  *provider
	pods  []*ticketcache.Cache
	regs  []*prometheus.Registry
	rdbs  []*redis.Client
}

func newFleet(t *testing.T, mod func(*ticketcache.Options)) *fleet {
	t.Helper()
	f := &fleet{db: ticketcachetest.NewDB(t), clock: newFakeClock()}
	f.prov = newProvider(f.clock)
	f.prov.latency = time.Millisecond // widens the window in which pods race for the lock
	for range pods {
		rdb := redis.NewClient(&redis.Options{Addr: f.db.Addr, DB: f.db.DB})
		reg := prometheus.NewRegistry()
		opts := ticketcache.Options{
			FetchToken:  f.prov.FetchToken,
			FetchTicket: f.prov.FetchTicket,
			MaxAge:      fleetMaxAge,
			LockTTL:     5 * time.Second,
			WaitEmpty:   10 * time.Second,
			Clock:       f.clock,
			Logger:      zaptest.NewLogger(t),
			Registerer:  reg,
		}
		if mod != nil {
			mod(&opts)
		}
		c, err := ticketcache.New(rdb, opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() {
			_ = c.Close()
			_ = rdb.Close()
		})
		f.pods = append(f.pods, c)
		f.regs = append(f.regs, reg)
		f.rdbs = append(f.rdbs, rdb)
	}
	return f
}

// refreshes sums a reason's refreshes over every pod.
func (f *fleet) refreshes(t *testing.T, reason string) float64 {
	var n float64
	for _, reg := range f.regs {
		n += refreshes(t, reg, reason)
	}
	return n
}

// TestFleetOnePairPerPeriod runs 8 pods × 50 goroutines calling Get while
// the clock crosses several MaxAge periods. The clock moves in steps shorter
// than the provider's overlap, and only once every goroutine has finished a
// Get begun after the previous step.
func TestFleetOnePairPerPeriod(t *testing.T) {
	t.Parallel()
	f := newFleet(t, nil)
	n := pods * perPod
	var (
		epoch   atomic.Int64
		seen    = make([]atomic.Int64, n) // the epoch at which each goroutine's last finished Get began
		handed  atomic.Int64
		dead    atomic.Int64
		errs    atomic.Int64
		lastErr atomic.Value
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.pods[i%pods]
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := epoch.Load()
				tk, err := c.Get(context.Background(), app)
				if err != nil {
					errs.Add(1)
					lastErr.Store(err)
				} else {
					handed.Add(1)
					if f.prov.Dead(tk.Value, f.clock.Now()) {
						dead.Add(1)
					}
				}
				seen[i].Store(e)
				time.Sleep(50 * time.Microsecond)
			}
		}()
	}
	barrier := func() {
		e := epoch.Add(1)
		eventually(t, "every goroutine to finish a Get", func() bool {
			for i := range seen {
				if seen[i].Load() < e {
					return false
				}
			}
			return true
		})
	}
	mintsReach := func(want int) {
		eventually(t, "the period's refresh", func() bool {
			tokens, tickets, _, _ := f.prov.counts()
			return tokens >= want && tickets >= want
		})
	}

	barrier()
	mintsReach(1)
	for p := 1; p <= fleetPeriods; p++ {
		for s := 1; s <= stepsPerAge; s++ {
			f.clock.Advance(fleetMaxAge / stepsPerAge)
			barrier()
			if s == stepsPerAge { // the pair has reached MaxAge
				mintsReach(1 + p)
				barrier()
			}
		}
	}
	close(stop)
	wg.Wait()

	if n := errs.Load(); n != 0 {
		t.Errorf("Get failed %d times; last: %v", n, lastErr.Load())
	}
	if n := dead.Load(); n != 0 {
		t.Errorf("Get handed out a dead ticket %d times of %d", n, handed.Load())
	}
	tokens, tickets, _, _ := f.prov.counts()
	if want := 1 + fleetPeriods; tokens != want || tickets != want {
		t.Errorf("mints = %d tokens, %d tickets over %d periods, want %d each", tokens, tickets, want, want)
	}
	if got := f.refreshes(t, ticketcache.ReasonAge); got != fleetPeriods {
		t.Errorf("refreshes{reason=age} over all pods = %v, want %d", got, fleetPeriods)
	}
	t.Logf("%d Gets, %d token and %d ticket mints", handed.Load(), tokens, tickets)
}

func TestFleetConcurrentRejectsRefreshOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, nil)
	ctx := context.Background()
	first, err := f.pods[0].Get(ctx, app)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var rejectErrs, getErrs atomic.Int64
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := f.pods[i%pods].Reject(ctx, app, first.Generation); err != nil {
				rejectErrs.Add(1)
			}
		}()
	}
	// Gets run meanwhile: before the rejection they may see the first
	// generation, after it only the second.
	for i := range pods * perPod {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := f.pods[i%pods].Get(ctx, app); err != nil {
				getErrs.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if rejectErrs.Load()+getErrs.Load() != 0 {
		t.Fatalf("%d Reject and %d Get calls failed", rejectErrs.Load(), getErrs.Load())
	}
	for i, c := range f.pods {
		tk, err := c.Get(ctx, app)
		if err != nil || tk.Generation != first.Generation+1 {
			t.Errorf("pod %d: Get(%q) after the rejections = %v, %v, want generation %d", i, app, tk, err, first.Generation+1)
		}
	}
	tokens, tickets, _, _ := f.prov.counts()
	if tokens != 2 || tickets != 2 {
		t.Errorf("mints = %d tokens, %d tickets, want 2 each: one refresh for 100 rejections", tokens, tickets)
	}
	if got := f.refreshes(t, ticketcache.ReasonRejected); got != 1 {
		t.Errorf("refreshes{reason=rejected} over all pods = %v, want 1", got)
	}
}

// TestFleetDeadRefresherDelaysOnlyUntilLockExpiry: a pod's refresh blocks
// until its context is cancelled, and the pod dies then (its Redis client
// gone, so it cannot release the lock). Another pod, waiting meanwhile,
// refreshes once the lock expires.
func TestFleetDeadRefresherDelaysOnlyUntilLockExpiry(t *testing.T) {
	t.Parallel()
	const lockTTL = 300 * time.Millisecond
	f := newFleet(t, func(o *ticketcache.Options) { o.LockTTL = lockTTL })
	entered := make(chan struct{})
	f.prov.setTokenHook(func(ctx context.Context, n int) error {
		if n == 1 {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	dying := make(chan error, 1)
	go func() {
		_, err := f.pods[0].Get(ctx, app)
		dying <- err
	}()
	<-entered
	if n, err := f.db.Client.Exists(context.Background(), ticketcache.LockKey(app)).Result(); err != nil || n != 1 {
		t.Fatalf("lock held by the refresher: EXISTS = %d, %v, want 1", n, err)
	}
	survivor := make(chan error, 1)
	var got ticketcache.Ticket
	go func() {
		var err error
		got, err = f.pods[1].Get(context.Background(), app)
		survivor <- err
	}()
	_ = f.rdbs[0].Close() // the pod dies: it cannot release its lock
	cancel()
	if err := <-dying; !errors.Is(err, context.Canceled) {
		t.Errorf("dying pod's Get = %v, want context.Canceled", err)
	}
	if err := <-survivor; err != nil {
		t.Fatalf("surviving pod's Get: %v", err)
	}
	if got.Generation != 1 || f.prov.Dead(got.Value, f.clock.Now()) {
		t.Errorf("surviving pod's Get = %v, want generation 1, alive", got)
	}
	if got := refreshes(t, f.regs[1], ticketcache.ReasonEmpty); got != 1 {
		t.Errorf("surviving pod's refreshes{reason=empty} = %v, want 1", got)
	}
	if tokens, _, tokenCalls, _ := f.prov.counts(); tokens != 1 || tokenCalls != 2 {
		t.Errorf("tokens = %d after %d calls, want 1 after 2 (the dead pod minted none)", tokens, tokenCalls)
	}
}
