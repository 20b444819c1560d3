package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/workertest"
)

// TestTicketFleetAgainstFakeProvider runs 8 simulated pods (each its own
// Redis client and cache) x 50 goroutines signing real sync requests
// through three refresh periods: one token and one ticket mint per period,
// and no request is ever signed with a ticket the provider had killed.
func TestTicketFleetAgainstFakeProvider(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	clk := workertest.NewClock(time.Now())
	fake := idasctest.NewServer(t, idasctest.Options{Apps: map[string]string{appID: secret}, Now: clk.Now})
	provider := idasc.New(fake.URL)
	const maxAge = 20 * time.Minute

	var caches []*ticketcache.Cache
	for i := 0; i < 8; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB})
		t.Cleanup(func() { _ = rdb.Close() })
		c, err := ticketcache.New(rdb, ticketcache.Options{
			MaxAge: maxAge,
			Clock:  clk,
			FetchToken: func(ctx context.Context, app string) (ticketcache.Credential, error) {
				cr, err := provider.AccessToken(ctx, app, secret)
				return ticketcache.Credential{Value: cr.Value, ExpiresIn: cr.ExpiresIn}, err
			},
			FetchTicket: func(ctx context.Context, app, token string) (ticketcache.Credential, error) {
				cr, err := provider.SignTicket(ctx, app, token)
				return ticketcache.Credential{Value: cr.Value, ExpiresIn: cr.ExpiresIn}, err
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		caches = append(caches, c)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var calls, rejected, failures, stepNo atomic.Int64
	// cycled[i] is the step at which goroutine i last began a Get and
	// finished signing with what it got.
	cycled := make([]atomic.Int64, len(caches)*50)
	for ci, c := range caches {
		for g := 0; g < 50; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					began := stepNo.Load()
					tk, err := c.Get(ctx, appID)
					if err != nil {
						if ctx.Err() == nil {
							failures.Add(1)
						}
						continue
					}
					_, err = provider.Sync(ctx, idasc.SyncRequest{AppID: appID, OrderNo: "ord-fleet", Ticket: tk.Value})
					calls.Add(1)
					if idasc.IsRejected(err) {
						rejected.Add(1)
						_ = c.Reject(ctx, appID, tk.Generation)
					}
					cycled[ci*50+g].Store(began)
				}
			}()
		}
	}
	// Three refresh periods in steps of 20 s. The clock runs far faster
	// than real time, so it moves only when no refresh is under way or due
	// and every goroutine has signed a request with a ticket it got at the
	// current step: no request is made with a ticket held for longer than
	// a step, as in production, where the lock (25 s) also bounds a
	// refresh well inside the provider's one-minute overlap.
	const step = 20 * time.Second
	for elapsed := time.Duration(0); elapsed < 3*maxAge+2*time.Minute; elapsed += step {
		now := stepNo.Load()
		workertest.WaitFor(t, 30*time.Second, "every goroutine to sign at this step and no refresh under way or due", func() bool {
			for i := range cycled {
				if cycled[i].Load() < now {
					return false
				}
			}
			e, _, err := ticketcache.ReadEntry(ctx, db.Client, appID)
			locked := db.Client.Exists(ctx, ticketcache.LockKey(appID)).Val() > 0
			tm, tk := fake.TokenMints(appID), fake.TicketMints(appID)
			return err == nil && !locked && tm == tk && e.Generation == int64(tk) && !e.NeedsTicket &&
				clk.Now().Sub(e.TicketFetchedAt) < maxAge
		})
		stepNo.Add(1)
		clk.Advance(step)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()

	if tm, tk := fake.TokenMints(appID), fake.TicketMints(appID); tm != 4 || tk != 4 {
		t.Errorf("token mints %d, ticket mints %d over three periods, want 4 and 4 (the first and one per period)", tm, tk)
	}
	if n := fake.RejectedWithDeadTicket(appID); n != 0 || rejected.Load() != 0 {
		t.Errorf("%d requests signed with a killed ticket (%d rejected), want 0", n, rejected.Load())
	}
	if n := failures.Load(); n != 0 {
		t.Errorf("%d Get calls failed", n)
	}
}
