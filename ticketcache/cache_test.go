package ticketcache_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/facesync/facesync/ticketcache"
)

const app = "TIDA0001"

// bundle is one test's Redis, clock, provider model and first cache.
type bundle struct {
	mr    *miniredis.Miniredis
	rdb   *redis.Client // for looking at and tampering with the entry
	clock *fakeClock
	prov  *provider
	opts  ticketcache.Options
	cache *ticketcache.Cache
	reg   *prometheus.Registry
}

func setup(t *testing.T, mod ...func(*ticketcache.Options)) *bundle {
	t.Helper()
	b := &bundle{mr: miniredis.RunT(t), clock: newFakeClock()}
	b.prov = newProvider(b.clock)
	b.rdb = redis.NewClient(&redis.Options{Addr: b.mr.Addr()})
	t.Cleanup(func() { _ = b.rdb.Close() })
	b.opts = ticketcache.Options{
		FetchToken:  b.prov.FetchToken,
		FetchTicket: b.prov.FetchTicket,
		Clock:       b.clock,
		LockTTL:     5 * time.Second,
		WaitEmpty:   200 * time.Millisecond,
		Logger:      zaptest.NewLogger(t),
	}
	for _, f := range mod {
		f(&b.opts)
	}
	b.cache, b.reg = b.pod(t)
	return b
}

// pod returns another cache (another simulated pod) on the same Redis,
// with a client and a metrics registry of its own.
func (b *bundle) pod(t *testing.T) (*ticketcache.Cache, *prometheus.Registry) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: b.mr.Addr()})
	reg := prometheus.NewRegistry()
	opts := b.opts
	opts.Registerer = reg
	c, err := ticketcache.New(rdb, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ticketcache.SetTicketBackoff(c, time.Millisecond)
	t.Cleanup(func() {
		_ = c.Close()
		_ = rdb.Close()
	})
	return c, reg
}

func (b *bundle) entry(t *testing.T) ticketcache.Entry {
	t.Helper()
	e, _, err := ticketcache.ReadEntry(context.Background(), b.rdb, app)
	if err != nil {
		t.Fatalf("ReadEntry: %v", err)
	}
	return e
}

// metric returns a counter's value, or a histogram's sample count, for the
// labels given; 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if !maps.Equal(got, labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func refreshes(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return metric(t, reg, "facesync_ticket_refreshes_total", map[string]string{"app": app, "reason": reason})
}

func mustGet(t *testing.T, c *ticketcache.Cache) ticketcache.Ticket {
	t.Helper()
	tk, err := c.Get(context.Background(), app)
	if err != nil {
		t.Fatalf("Get(%q): %v", app, err)
	}
	return tk
}

func TestGetEmptyFetchesOnePair(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := mustGet(t, b.cache)
	if tk.Generation != 1 {
		t.Errorf("Get(%q).Generation = %d, want 1", app, tk.Generation)
	}
	if got := b.prov.ticketToken(tk.Value); got == "" || got != b.prov.lastToken() {
		t.Errorf("Get(%q) returned a ticket not made with the newest token", app)
	}
	if tokens, tickets, _, _ := b.prov.counts(); tokens != 1 || tickets != 1 {
		t.Errorf("mints = %d tokens, %d tickets, want 1, 1", tokens, tickets)
	}
	if got := refreshes(t, b.reg, ticketcache.ReasonEmpty); got != 1 {
		t.Errorf("refreshes{reason=empty} = %v, want 1", got)
	}
	if got := metric(t, b.reg, "facesync_ticket_refresh_duration_seconds", map[string]string{"app": app}); got != 1 {
		t.Errorf("refresh_duration_seconds samples = %v, want 1", got)
	}
	if n := len(b.mr.Keys()); n != 1 {
		t.Errorf("redis keys after the refresh = %v, want only the entry (lock released)", b.mr.Keys())
	}
}

// TestEntryFormat freezes the entry partners read and write.
func TestEntryFormat(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := mustGet(t, b.cache)
	if got, want := ticketcache.Key(app), "facesync:ticket:TIDA0001"; got != want {
		t.Errorf("Key(%q) = %q, want %q", app, got, want)
	}
	if got, want := ticketcache.LockKey(app), "facesync:ticket:TIDA0001:lock"; got != want {
		t.Errorf("LockKey(%q) = %q, want %q", app, got, want)
	}
	got, err := b.rdb.HGetAll(context.Background(), "facesync:ticket:TIDA0001").Result()
	if err != nil {
		t.Fatal(err)
	}
	ms := strconv.FormatInt(epoch.UnixMilli(), 10)
	want := map[string]string{
		"access_token":               b.prov.lastToken(),
		"access_token_fetched_at_ms": ms,
		"access_token_expire_in_s":   "7200",
		"ticket":                     tk.Value,
		"ticket_fetched_at_ms":       ms,
		"ticket_expire_in_s":         "3600",
		"generation":                 "1",
	}
	if !maps.Equal(got, want) {
		t.Errorf("HGETALL %s fields = %v, want %v", ticketcache.Key(app), slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

func TestRefreshRules(t *testing.T) {
	t.Parallel()
	maxAge := ticketcache.DefaultMaxAge
	advance := func(d time.Duration) func(*testing.T, *bundle) {
		return func(_ *testing.T, b *bundle) { b.clock.Advance(d) }
	}
	reject := func(gen int64) func(*testing.T, *bundle) {
		return func(t *testing.T, b *bundle) {
			if err := b.cache.Reject(context.Background(), app, gen); err != nil {
				t.Fatalf("Reject(%q, %d): %v", app, gen, err)
			}
		}
	}
	tests := []struct {
		name       string
		ticketLife time.Duration
		steps      []func(*testing.T, *bundle) // after a first Get that fetched generation 1
		wantGot    int64                       // generation the last Get returns
		wantGen    int64                       // generation stored once background refreshes end
		wantReason string                      // "" for no refresh after the first
	}{
		{name: "younger than max age", steps: steps(advance(maxAge - time.Second)), wantGot: 1, wantGen: 1},
		{name: "max age reached", steps: steps(advance(maxAge)), wantGot: 1, wantGen: 2, wantReason: ticketcache.ReasonAge},
		{name: "short ticket with 601s left", ticketLife: 900 * time.Second, steps: steps(advance(299 * time.Second)), wantGot: 1, wantGen: 1},
		{name: "short ticket with 599s left", ticketLife: 900 * time.Second, steps: steps(advance(301 * time.Second)), wantGot: 1, wantGen: 2, wantReason: ticketcache.ReasonExpiry},
		{name: "ticket shorter than 600s before half life", ticketLife: 300 * time.Second, steps: steps(advance(149 * time.Second)), wantGot: 1, wantGen: 1},
		{name: "ticket shorter than 600s after half life", ticketLife: 300 * time.Second, steps: steps(advance(151 * time.Second)), wantGot: 1, wantGen: 2, wantReason: ticketcache.ReasonExpiry},
		{name: "ticket already expired", steps: steps(advance(2 * time.Hour)), wantGot: 2, wantGen: 2, wantReason: ticketcache.ReasonExpiry},
		{name: "current generation rejected", steps: steps(reject(1)), wantGot: 2, wantGen: 2, wantReason: ticketcache.ReasonRejected},
		{name: "stale generation rejected", steps: steps(reject(1), get, reject(1), reject(0), reject(7)), wantGot: 2, wantGen: 2, wantReason: ticketcache.ReasonRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *ticketcache.Options) { o.Memo = -1 }) // every Get reads redis
			if tt.ticketLife != 0 {
				b.prov.ticketLife = tt.ticketLife
			}
			mustGet(t, b.cache)
			for _, step := range tt.steps {
				step(t, b)
			}
			got := mustGet(t, b.cache)
			if err := b.cache.Close(); err != nil { // lets a background refresh end
				t.Fatal(err)
			}
			if got.Generation != tt.wantGot {
				t.Errorf("Get(%q).Generation = %d, want %d", app, got.Generation, tt.wantGot)
			}
			if gen := b.entry(t).Generation; gen != tt.wantGen {
				t.Errorf("stored generation = %d, want %d", gen, tt.wantGen)
			}
			tokens, tickets, _, _ := b.prov.counts()
			if int64(tokens) != tt.wantGen || int64(tickets) != tt.wantGen {
				t.Errorf("mints = %d tokens, %d tickets, want %d each", tokens, tickets, tt.wantGen)
			}
			for _, r := range []string{ticketcache.ReasonAge, ticketcache.ReasonExpiry, ticketcache.ReasonRejected} {
				want := 0.0
				if r == tt.wantReason {
					want = 1
				}
				if got := refreshes(t, b.reg, r); got != want {
					t.Errorf("refreshes{reason=%s} = %v, want %v", r, got, want)
				}
			}
		})
	}
}

func steps(s ...func(*testing.T, *bundle)) []func(*testing.T, *bundle) { return s }

func get(t *testing.T, b *bundle) { mustGet(t, b.cache) }

func TestMemo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := mustGet(t, b.cache)
	ctx := context.Background()
	if err := b.rdb.HSet(ctx, ticketcache.Key(app), "ticket", "CHANGED-BEHIND-THE-MEMO").Err(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b.cache); got != first {
		t.Errorf("Get(%q) within the memo = %v, want the memoized %v", app, got, first)
	}
	b.clock.Advance(ticketcache.DefaultMemo)
	if got := mustGet(t, b.cache); got.Value != "CHANGED-BEHIND-THE-MEMO" {
		t.Errorf("Get(%q) after the memo = %v, want the ticket in redis", app, got)
	}
	// A rejection in this process ends the memo at once.
	if err := b.cache.Reject(ctx, app, first.Generation); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b.cache); got.Generation != 2 {
		t.Errorf("Get(%q) after Reject(%d) = generation %d, want 2", app, first.Generation, got.Generation)
	}
}

func TestMemoOff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) { o.Memo = -1 })
	mustGet(t, b.cache)
	if err := b.rdb.HSet(context.Background(), ticketcache.Key(app), "ticket", "CHANGED").Err(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b.cache); got.Value != "CHANGED" {
		t.Errorf("Get(%q) with the memo off = %v, want the ticket in redis", app, got)
	}
}

func TestTicketRetriedWithTheSameToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.prov.setTicketHook(func(_ context.Context, n int) error {
		if n == 1 {
			return errors.New("provider: http 502")
		}
		return nil
	})
	tk := mustGet(t, b.cache)
	tokens, tickets, tokenCalls, ticketCalls := b.prov.counts()
	if tokens != 1 || tokenCalls != 1 {
		t.Errorf("token mints = %d (calls %d), want exactly 1", tokens, tokenCalls)
	}
	if tickets != 1 || ticketCalls != 2 {
		t.Errorf("tickets = %d after %d calls, want 1 after 2", tickets, ticketCalls)
	}
	if b.prov.ticketToken(tk.Value) != b.prov.lastToken() {
		t.Error("the ticket handed out was not made with the one token minted")
	}
}

// errRefusedTicket stands for the provider refusing the app's account.
var errRefusedTicket = errors.New("provider: code 400104: refused")

// TestFinalTicketErrorNotRetried: an error Options.Final calls final (the
// provider refused the app) ends the refresh after one ticket call, and
// says so in one log line.
func TestFinalTicketErrorNotRetried(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	b := setup(t, func(o *ticketcache.Options) {
		o.Final = func(err error) bool { return errors.Is(err, errRefusedTicket) }
		o.Logger = zap.New(core)
	})
	b.prov.setTicketHook(func(context.Context, int) error { return errRefusedTicket })
	_, err := b.cache.Get(context.Background(), app)
	if !errors.Is(err, errRefusedTicket) {
		t.Fatalf("Get(%q) with the ticket refused = %v, want the refusal", app, err)
	}
	if _, _, _, ticketCalls := b.prov.counts(); ticketCalls != 1 {
		t.Errorf("ticket calls = %d, want 1: a refusal is not asked again", ticketCalls)
	}
	if n := logs.FilterMessageSnippet("ticket refresh stopped: the provider refused").Len(); n != 1 || logs.Len() != 1 {
		t.Errorf("log lines: %v, want one saying the refresh stopped", logs.All())
	}
}

func TestTicketFailureKeepsTheNewToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var failing atomic.Bool
	failing.Store(true)
	b.prov.setTicketHook(func(context.Context, int) error {
		if failing.Load() {
			return errors.New("provider: http 503")
		}
		return nil
	})
	ctx := context.Background()
	_, err := b.cache.Get(ctx, app)
	if !errors.Is(err, ticketcache.ErrNoTicket) {
		t.Fatalf("Get(%q) with the ticket fetch failing = %v, want ErrNoTicket", app, err)
	}
	e := b.entry(t)
	if !e.NeedsTicket || e.AccessToken != b.prov.lastToken() || e.Ticket != "" {
		t.Fatalf("entry after the failed ticket = %v, want the new token with needs_ticket and no ticket", e)
	}
	// Partners get the new token at once: the previous one is dying.
	if tok, err := b.cache.AccessToken(ctx, app); err != nil || tok != b.prov.lastToken() {
		t.Errorf("AccessToken(%q) = (token equal %t, %v), want the new token", app, tok == b.prov.lastToken(), err)
	}
	// Right after a failure this process does not hammer the provider.
	_, _, _, callsBefore := b.prov.counts()
	if _, err := b.cache.Get(ctx, app); !errors.Is(err, ticketcache.ErrNoTicket) {
		t.Errorf("Get(%q) right after the failure = %v, want ErrNoTicket", app, err)
	}
	if _, _, _, calls := b.prov.counts(); calls != callsBefore {
		t.Errorf("ticket calls right after a failure = %d, want %d", calls, callsBefore)
	}
	failing.Store(false)
	b.clock.Advance(time.Second)
	other, _ := b.pod(t)
	tk := mustGet(t, other)
	if tokens, _, _, _ := b.prov.counts(); tokens != 1 {
		t.Errorf("token mints = %d, want 1: the stored token must be reused", tokens)
	}
	if tk.Generation != 1 || b.prov.ticketToken(tk.Value) != b.prov.lastToken() {
		t.Errorf("Get(%q) = generation %d, want 1 made with the stored token", app, tk.Generation)
	}
}

// TestOldTicketServedUntilOverlapEnds: an age refresh mints a token, then
// every ticket fetch fails. The old ticket is handed out while the
// provider's overlap lasts, and not after.
func TestOldTicketServedUntilOverlapEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) { o.WaitEmpty = 5 * time.Second })
	first := mustGet(t, b.cache)
	var failing atomic.Bool
	failing.Store(true)
	b.prov.setTicketHook(func(context.Context, int) error {
		if failing.Load() {
			return errors.New("provider: http 503")
		}
		return nil
	})
	b.clock.Advance(ticketcache.DefaultMaxAge)
	mustGet(t, b.cache) // starts the background refresh
	other, _ := b.pod(t)
	eventually(t, "the age refresh to store its token", func() bool { return b.entry(t).NeedsTicket })
	b.clock.Advance(30 * time.Second)
	if got := mustGet(t, other); got != first {
		t.Errorf("Get(%q) inside the overlap = %v, want the old %v", app, got, first)
	}
	failing.Store(false)
	b.clock.Advance(30 * time.Second)
	got := mustGet(t, other)
	if got.Generation != 2 || b.prov.Dead(got.Value, b.clock.Now()) {
		t.Errorf("Get(%q) after the overlap = %v (dead %t), want generation 2 alive", app, got, b.prov.Dead(got.Value, b.clock.Now()))
	}
	if tokens, _, _, _ := b.prov.counts(); tokens != 2 {
		t.Errorf("token mints = %d, want 2", tokens)
	}
}

func TestExpiredLockOwnerDoesNotWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, _ := b.pod(t)
	var otherTicket ticketcache.Ticket
	b.prov.setTicketHook(func(ctx context.Context, n int) error {
		if n != 1 {
			return nil
		}
		// The first refresher stalls past its lock; another pod takes over.
		b.mr.FastForward(b.opts.LockTTL + time.Millisecond)
		tk, err := other.Get(ctx, app)
		if err != nil {
			return fmt.Errorf("other pod: %w", err)
		}
		otherTicket = tk
		return nil
	})
	_, err := b.cache.Get(context.Background(), app)
	if err == nil || !strings.Contains(err.Error(), "lock expired") {
		t.Errorf("Get(%q) by the stalled refresher = %v, want a lost-lock error", app, err)
	}
	e := b.entry(t)
	if otherTicket.Generation != 1 || e.Generation != 1 || e.Ticket != otherTicket.Value {
		t.Errorf("entry generation %d, want 1 holding the other pod's ticket (its generation %d)", e.Generation, otherTicket.Generation)
	}
	if tokens, _, _, _ := b.prov.counts(); tokens != 1 {
		t.Errorf("token mints = %d, want 1 (the successor reuses the stored token)", tokens)
	}
}

// cmdHook runs fn once, before the nth command named name sent through the
// client it is added to.
type cmdHook struct {
	name string
	nth  int
	fn   func()

	mu   sync.Mutex
	seen int
}

func (h *cmdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *cmdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *cmdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == h.name {
			h.mu.Lock()
			h.seen++
			run := h.seen == h.nth
			h.mu.Unlock()
			if run {
				h.fn()
			}
		}
		return next(ctx, cmd)
	}
}

// hookedPod returns a cache on a client of its own carrying hook.
func (b *bundle) hookedPod(t *testing.T, hook redis.Hook) *ticketcache.Cache {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: b.mr.Addr()})
	rdb.AddHook(hook)
	c, err := ticketcache.New(rdb, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = rdb.Close()
	})
	return c
}

// TestLockWinnerRereadsTheEntry: a pod sees no ticket, but another pod
// refreshes and releases the lock before the first one takes it. The first
// must find the new pair under the lock and not refresh again.
func TestLockWinnerRereadsTheEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, _ := b.pod(t)
	var otherTicket ticketcache.Ticket
	late := b.hookedPod(t, &cmdHook{name: "set", nth: 1, fn: func() { otherTicket = mustGet(t, other) }})
	if got := mustGet(t, late); got != otherTicket || got.Generation != 1 {
		t.Errorf("Get(%q) after losing the race = %v, want the other pod's %v", app, got, otherTicket)
	}
	if tokens, tickets, _, _ := b.prov.counts(); tokens != 1 || tickets != 1 {
		t.Errorf("mints = %d tokens, %d tickets, want 1, 1", tokens, tickets)
	}
}

func TestCancelledRefresherReleasesLock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entered := make(chan struct{})
	b.prov.setTokenHook(func(ctx context.Context, n int) error {
		if n == 1 {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.cache.Get(ctx, app)
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Get(%q) cancelled mid-refresh = %v, want context.Canceled", app, err)
	}
	if b.mr.Exists(ticketcache.LockKey(app)) {
		t.Error("lock still held after the refresher was cancelled")
	}
	other, _ := b.pod(t)
	if tk := mustGet(t, other); tk.Generation != 1 {
		t.Errorf("Get(%q) on another pod = generation %d, want 1", app, tk.Generation)
	}
	if tokens, _, _, _ := b.prov.counts(); tokens != 1 {
		t.Errorf("token mints = %d, want 1", tokens)
	}
}

func TestWaitForAnotherRefresher(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) { o.WaitEmpty = 10 * time.Second })
	release := make(chan struct{})
	entered := make(chan struct{})
	b.prov.setTokenHook(func(_ context.Context, n int) error {
		if n == 1 {
			close(entered)
			<-release
		}
		return nil
	})
	first := make(chan ticketcache.Ticket, 1)
	go func() {
		tk, _ := b.cache.Get(context.Background(), app)
		first <- tk
	}()
	<-entered
	// The other pod finds the lock taken; its second look at the entry
	// lets the refresher finish.
	other := b.hookedPod(t, &cmdHook{name: "hmget", nth: 2, fn: func() { close(release) }})
	got, err := other.Get(context.Background(), app)
	if err != nil {
		t.Fatalf("Get(%q) waiting for another pod's refresh: %v", app, err)
	}
	if want := <-first; got != want {
		t.Errorf("waiting Get(%q) = %v, want the refresher's %v", app, got, want)
	}
	if tokens, tickets, _, _ := b.prov.counts(); tokens != 1 || tickets != 1 {
		t.Errorf("mints = %d tokens, %d tickets, want 1, 1", tokens, tickets)
	}
}

func TestWaitEmptyEndsWithErrNoTicket(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) { o.WaitEmpty = 50 * time.Millisecond })
	// Another process holds the lock and never finishes.
	b.mr.Set(ticketcache.LockKey(app), "someone-else")
	_, err := b.cache.Get(context.Background(), app)
	if !errors.Is(err, ticketcache.ErrNoTicket) || !strings.Contains(err.Error(), app) {
		t.Errorf("Get(%q) with the lock held elsewhere = %v, want ErrNoTicket naming the app", app, err)
	}
	if tokens, _, tokenCalls, _ := b.prov.counts(); tokens != 0 || tokenCalls != 0 {
		t.Errorf("token calls = %d, want none without the lock", tokenCalls)
	}
}

func TestExternalSource(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) {
		o.Source = ticketcache.External
		o.FetchToken, o.FetchTicket = nil, nil
		o.WaitEmpty = 50 * time.Millisecond
	})
	ctx := context.Background()
	_, err := b.cache.Get(ctx, app)
	if !errors.Is(err, ticketcache.ErrNoTicket) || !strings.Contains(err.Error(), "no entry") {
		t.Errorf("Get(%q) with no entry = %v, want ErrNoTicket saying there is no entry", app, err)
	}
	token := ticketcache.Credential{Value: "PARTNER-TOKEN", ExpiresIn: 7200 * time.Second}
	ticket := ticketcache.Credential{Value: "PARTNER-TICKET", ExpiresIn: 3600 * time.Second}
	gen, err := ticketcache.Publish(ctx, b.rdb, app, token, ticket, b.clock.Now())
	if err != nil || gen != 1 {
		t.Fatalf("Publish = %d, %v, want 1, nil", gen, err)
	}
	if got := mustGet(t, b.cache); got != (ticketcache.Ticket{Value: "PARTNER-TICKET", Generation: 1}) {
		t.Errorf("Get(%q) = %v, want the partner's ticket, generation 1", app, got)
	}
	if err := b.cache.Reject(ctx, app, 1); err != nil {
		t.Errorf("Reject(%q, 1) = %v, want nil", app, err)
	}
	if e := b.entry(t); e.RejectedGeneration != 0 {
		t.Errorf("entry after Reject in external mode = %v, want it untouched", e)
	}
	// A rejection ends the memo, so the partner's next pair is seen at once.
	if _, err := ticketcache.Publish(ctx, b.rdb, app, token, ticket, b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b.cache); got.Generation != 2 {
		t.Errorf("Get(%q) after Reject and a new pair = generation %d, want 2", app, got.Generation)
	}
	if tok, err := b.cache.AccessToken(ctx, app); err != nil || tok != "PARTNER-TOKEN" {
		t.Errorf("AccessToken(%q) = %q, %v, want the partner's token", app, tok, err)
	}
	b.clock.Advance(time.Hour)
	if _, err := b.cache.Get(ctx, app); !errors.Is(err, ticketcache.ErrNoTicket) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Get(%q) after the ticket's lifetime = %v, want ErrNoTicket saying it expired", app, err)
	}
	if _, _, tokenCalls, ticketCalls := b.prov.counts(); tokenCalls+ticketCalls != 0 {
		t.Errorf("provider calls in external mode = %d, want 0", tokenCalls+ticketCalls)
	}
}

func TestAccessToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.cache.AccessToken(ctx, app); !errors.Is(err, ticketcache.ErrNoToken) {
		t.Errorf("AccessToken(%q) with no entry = %v, want ErrNoToken", app, err)
	}
	mustGet(t, b.cache)
	if tok, err := b.cache.AccessToken(ctx, app); err != nil || tok != b.prov.lastToken() {
		t.Errorf("AccessToken(%q) = (newest %t, %v), want the newest token", app, tok == b.prov.lastToken(), err)
	}
	if _, _, tokenCalls, _ := b.prov.counts(); tokenCalls != 1 {
		t.Errorf("token calls = %d, want 1: AccessToken never fetches", tokenCalls)
	}
	b.clock.Advance(7200 * time.Second)
	if _, err := b.cache.AccessToken(ctx, app); !errors.Is(err, ticketcache.ErrNoToken) {
		t.Errorf("AccessToken(%q) after its lifetime = %v, want ErrNoToken", app, err)
	}
}

func TestMaintain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		b.cache.Maintain(ctx, []string{app}, 5*time.Millisecond)
		close(done)
	}()
	eventually(t, "Maintain to fetch the first pair", func() bool { return b.entry(t).Generation == 1 })
	b.clock.Advance(ticketcache.DefaultMaxAge)
	eventually(t, "Maintain to refresh the aged pair", func() bool { return b.entry(t).Generation == 2 })
	cancel()
	<-done
}

// TestNoValuesInErrorsOrLogs: errors and logs name the app and the cause,
// never a token or ticket.
func TestNoValuesInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	b := setup(t, func(o *ticketcache.Options) { o.Logger = zap.New(core) })
	ctx := context.Background()
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	first := mustGet(t, b.cache)
	collect(b.cache.Reject(ctx, app, first.Generation))
	b.prov.setTicketHook(func(context.Context, int) error { return errors.New("provider: code 400101") })
	_, err := b.cache.Get(ctx, app)
	collect(err)
	b.clock.Advance(time.Second)
	// A malformed field next to the values.
	if err := b.rdb.HSet(ctx, ticketcache.Key(app), "generation", "not-a-number").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = b.cache.Get(ctx, app)
	collect(err)
	_, err = b.cache.AccessToken(ctx, app)
	collect(err)
	_, _, err = ticketcache.ReadEntry(ctx, b.rdb, app)
	collect(err)
	// Redis unreachable.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	defer dead.Close()
	gone, err := ticketcache.New(dead, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gone.Get(ctx, app)
	collect(err)
	collect(gone.Reject(ctx, app, 2))
	if len(errs) != 6 {
		t.Fatalf("got %d errors, want 6: %v", len(errs), errs)
	}
	var texts []string
	for _, err := range errs {
		if !strings.Contains(err.Error(), app) {
			t.Errorf("error %q does not name the app", err)
		}
		texts = append(texts, err.Error())
	}
	for _, l := range logs.All() {
		s := l.Message
		for k, v := range l.ContextMap() {
			s += fmt.Sprintf(" %s=%v", k, v)
		}
		texts = append(texts, s)
	}
	for _, v := range []any{first, ticketcache.Credential{Value: first.Value}, ticketcache.Entry{Ticket: first.Value, AccessToken: b.prov.lastToken()}} {
		texts = append(texts, fmt.Sprintf("%v %+v %#v %s", v, v, v, v))
	}
	for _, text := range texts {
		for _, secret := range b.prov.secrets() {
			if strings.Contains(text, secret) {
				t.Errorf("%q contains a token or ticket", text)
			}
		}
	}
}

func TestBadAppID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, id := range []string{"", "a:b", "{x}", "a b", "ä", strings.Repeat("a", 33), "app\n"} {
		if _, err := b.cache.Get(ctx, id); err == nil {
			t.Errorf("Get(%q) = nil error, want one", id)
		}
		if err := b.cache.Reject(ctx, id, 1); err == nil {
			t.Errorf("Reject(%q) = nil error, want one", id)
		}
		if _, err := b.cache.AccessToken(ctx, id); err == nil {
			t.Errorf("AccessToken(%q) = nil error, want one", id)
		}
		if _, _, err := ticketcache.ReadEntry(ctx, b.rdb, id); err == nil {
			t.Errorf("ReadEntry(%q) = nil error, want one", id)
		}
		cred := ticketcache.Credential{Value: "v", ExpiresIn: time.Hour}
		if _, err := ticketcache.Publish(ctx, b.rdb, id, cred, cred, epoch); err == nil {
			t.Errorf("Publish(%q) = nil error, want one", id)
		}
	}
	if keys := b.mr.Keys(); len(keys) != 0 {
		t.Errorf("redis keys after bad app ids = %q, want none", keys)
	}
	if _, err := b.cache.Get(ctx, strings.Repeat("A", 32)); err != nil {
		t.Errorf("Get of a 32-character app id: %v", err)
	}
}

func TestPublishRefusesEmptyCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ok := ticketcache.Credential{Value: "v", ExpiresIn: time.Hour}
	for _, bad := range []ticketcache.Credential{{}, {Value: "v"}, {Value: "v", ExpiresIn: time.Millisecond}, {ExpiresIn: time.Hour}} {
		if _, err := ticketcache.Publish(context.Background(), b.rdb, app, bad, ok, epoch); err == nil {
			t.Errorf("Publish(token %v) = nil error, want one", bad)
		}
		if _, err := ticketcache.Publish(context.Background(), b.rdb, app, ok, bad, epoch); err == nil {
			t.Errorf("Publish(ticket %v) = nil error, want one", bad)
		}
	}
}

func TestProviderAnswerWithoutLifetime(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *ticketcache.Options) {
		o.FetchToken = func(context.Context, string) (ticketcache.Credential, error) {
			return ticketcache.Credential{Value: "TOKEN-NO-LIFETIME"}, nil
		}
	})
	_, err := b.cache.Get(context.Background(), app)
	if !errors.Is(err, ticketcache.ErrNoTicket) || !strings.Contains(err.Error(), "lifetime") {
		t.Errorf("Get(%q) with a token of no lifetime = %v, want ErrNoTicket about the lifetime", app, err)
	}
	if keys := b.mr.Keys(); len(keys) != 0 {
		t.Errorf("redis keys = %q, want none: nothing stored", keys)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	p := newProvider(newFakeClock())
	own := ticketcache.Options{FetchToken: p.FetchToken, FetchTicket: p.FetchTicket}
	with := func(f func(*ticketcache.Options)) ticketcache.Options {
		o := own
		f(&o)
		return o
	}
	tests := []struct {
		name string
		opts ticketcache.Options
	}{
		{"own without FetchToken", with(func(o *ticketcache.Options) { o.FetchToken = nil })},
		{"own without FetchTicket", with(func(o *ticketcache.Options) { o.FetchTicket = nil })},
		{"unknown source", with(func(o *ticketcache.Options) { o.Source = 7 })},
		{"lock over the overlap", with(func(o *ticketcache.Options) { o.LockTTL = time.Minute })},
		{"memo over the overlap", with(func(o *ticketcache.Options) { o.Memo = 2 * time.Minute })},
		{"negative max age", with(func(o *ticketcache.Options) { o.MaxAge = -time.Second })},
		{"negative lock", with(func(o *ticketcache.Options) { o.LockTTL = -time.Second })},
	}
	for _, tt := range tests {
		if _, err := ticketcache.New(rdb, tt.opts); err == nil {
			t.Errorf("New(%s) = nil error, want one", tt.name)
		}
	}
	if _, err := ticketcache.New(nil, own); err == nil {
		t.Error("New(nil client) = nil error, want one")
	}
	if _, err := ticketcache.New(rdb, own); err != nil {
		t.Errorf("New(defaults) = %v, want nil", err)
	}
	if _, err := ticketcache.New(rdb, ticketcache.Options{Source: ticketcache.External}); err != nil {
		t.Errorf("New(external, no fetchers) = %v, want nil", err)
	}
}

func TestMetricsShareARegistry(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := ticketcache.New(rdb, ticketcache.Options{Source: ticketcache.External, Registerer: reg}); err != nil {
			t.Fatalf("New #%d on a shared registry: %v", i+1, err)
		}
	}
}

func TestParseSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ticketcache.Source
		wantErr bool
	}{
		{"own", ticketcache.Own, false},
		{"external", ticketcache.External, false},
		{"", ticketcache.Own, true},
		{"EXTERNAL", ticketcache.Own, true},
	}
	for _, tt := range tests {
		got, err := ticketcache.ParseSource(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseSource(%q) = %v, %v, want %v (error %t)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseSource(%q).String() = %q, want %q", tt.in, got.String(), tt.in)
		}
	}
}
