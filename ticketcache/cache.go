package ticketcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of [Options].
const (
	DefaultMaxAge       = 20 * time.Minute
	DefaultMinRemaining = 600 * time.Second
	DefaultLockTTL      = 25 * time.Second
	DefaultWaitEmpty    = 15 * time.Second
	DefaultMemo         = 2 * time.Second
)

// overlap is how long the provider keeps an access token (and its tickets)
// alive after a newer token was fetched. LockTTL and Memo must stay under it.
const overlap = time.Minute

const (
	pollInterval   = 20 * time.Millisecond // how often a waiter looks at Redis
	failureBackoff = time.Second           // pause after a failed refresh before this process tries again
	ticketAttempts = 4                     // ticket fetches with one fresh token before giving up
)

var (
	// ErrNoTicket is in the chain of Get's errors when no usable ticket could
	// be had: none appeared within Options.WaitEmpty or the refresh failed
	// (its cause is in the chain too). It is worth retrying later.
	ErrNoTicket = errors.New("no usable ticket")
	// ErrNoToken is in the chain of AccessToken's errors when the entry holds
	// no live access token.
	ErrNoToken = errors.New("no live access token")
)

// errLocked means another process holds the refresh lock.
var errLocked = errors.New("refresh lock held by another process")

// errLostLock means the lock expired before the refresher could write.
var errLostLock = errors.New("refresh lock expired before the write: result discarded")

// FetchTokenFunc fetches a new access token for an app. Every call mints a
// token at the provider and so kills the previous one a minute later.
type FetchTokenFunc func(ctx context.Context, appID string) (Credential, error)

// FetchTicketFunc fetches a SIGN ticket for an app with the given access
// token.
type FetchTicketFunc func(ctx context.Context, appID, accessToken string) (Credential, error)

// Clock tells the time for every expiry decision, so that tests move it.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Source says who refreshes the pair.
type Source int

const (
	// Own is facesync refreshing the pair (FACESYNC_TICKET_SOURCE=own).
	Own Source = iota
	// External is the partner's backend refreshing the pair while facesync
	// only reads it (FACESYNC_TICKET_SOURCE=external). A partner's Go backend
	// reading facesync's token uses it too: such a Cache never fetches.
	External
)

// ParseSource parses a FACESYNC_TICKET_SOURCE value: "own" or "external".
func ParseSource(s string) (Source, error) {
	switch s {
	case "own":
		return Own, nil
	case "external":
		return External, nil
	}
	return Own, fmt.Errorf("ticketcache: ticket source %q: want own or external", s)
}

// String returns the FACESYNC_TICKET_SOURCE spelling.
func (s Source) String() string {
	switch s {
	case Own:
		return "own"
	case External:
		return "external"
	}
	return fmt.Sprintf("source(%d)", int(s))
}

// Options configures a Cache. Zero durations take the defaults.
type Options struct {
	// FetchToken and FetchTicket call the provider; both are required with
	// source Own and never called with External.
	FetchToken  FetchTokenFunc
	FetchTicket FetchTicketFunc
	Source      Source

	// MaxAge is the pair's age at which it is refreshed
	// (FACESYNC_TICKET_MAX_AGE).
	MaxAge time.Duration
	// MinRemaining is the lifetime a ticket or token must have left; below
	// it the pair is refreshed. For a credential whose whole lifetime is no
	// longer, half its lifetime is used instead, so that it is not due the
	// moment it arrives.
	MinRemaining time.Duration
	// LockTTL bounds a refresh: a refresher that dies holding the lock
	// delays the others by at most this. It must exceed the provider
	// client's timeouts for one token and one ticket call together (2 × 10 s
	// by default), and stay well under the provider's one-minute overlap, so
	// that a stuck refresher's successor still finds the old ticket alive.
	// A refresh gives up at four fifths of it, leaving time to write.
	LockTTL time.Duration
	// WaitEmpty is how long Get waits for another process's refresh when
	// there is no usable ticket at all, before it returns ErrNoTicket.
	WaitEmpty time.Duration
	// Memo is how long a process reuses a ticket read from Redis without
	// asking again; under the one-minute overlap it is safe. A negative
	// Memo turns the memo off.
	Memo time.Duration
	// ConfirmFunc, when set, is called right after the refresh lock is
	// taken, with the lock's key; an error counts as the lock not held:
	// nothing is minted, the lock is released and the refresh fails with
	// that error. With Redis Sentinel facesync passes a wait for the
	// replicas (WAIT), so that a lock that lived on a lost master only
	// cannot let a second process mint (see the package documentation).
	ConfirmFunc func(ctx context.Context, keys ...string) error

	Clock  Clock       // nil: the system clock
	Logger *zap.Logger // nil: no logs
	// Registerer receives the facesync_ticket_* metrics; nil registers
	// nothing (the metrics are kept but not exported). Caches sharing a
	// registry share the metrics.
	Registerer prometheus.Registerer
	// Final, when set, reports whether an error of FetchToken or
	// FetchTicket is one no retry mends (the provider refused the app's
	// account or the request itself): the refresh stops at once, with one
	// log line, rather than asking again with the same token.
	Final func(error) bool
}

// Cache hands out an app's current ticket, refreshing the pair when due.
// It is safe for concurrent use.
type Cache struct {
	rdb   redis.UniversalClient
	opts  Options
	clock Clock
	log   *zap.Logger
	m     *metrics
	apps  sync.Map // app id -> *appState

	// ticketBackoff is the pause before the second ticket attempt; it
	// doubles after each failure.
	ticketBackoff time.Duration

	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup
}

// appState is what one process knows of one app.
type appState struct {
	memo       atomic.Pointer[memo]
	rejected   atomic.Int64 // the last generation Reject was called with here
	refreshing atomic.Bool  // a background refresh runs

	mu     sync.Mutex
	flight *flight
	failAt time.Time // of the last failed refresh, by the Clock
	failed error
}

type memo struct {
	t     Ticket
	until time.Time
}

// flight is one read of Redis (and maybe a refresh) shared by the callers
// of one process that arrive meanwhile.
type flight struct {
	done      chan struct{}
	t         Ticket
	err       error
	abandoned bool // the leader's context ended: its error is not the others'
}

// Ticket is a SIGN ticket with its generation, which Reject takes back.
type Ticket struct {
	Value      string
	Generation int64
}

// String hides the ticket's value.
func (t Ticket) String() string { return fmt.Sprintf("ticket generation %d", t.Generation) }

// GoString hides the ticket's value from %#v too.
func (t Ticket) GoString() string { return t.String() }

// New returns a Cache on rdb. It fails on options that cannot work.
func New(rdb redis.UniversalClient, opts Options) (*Cache, error) {
	if rdb == nil {
		return nil, errors.New("ticketcache: no redis client")
	}
	switch opts.Source {
	case Own:
		if opts.FetchToken == nil || opts.FetchTicket == nil {
			return nil, errors.New("ticketcache: source own needs FetchToken and FetchTicket")
		}
	case External:
	default:
		return nil, fmt.Errorf("ticketcache: unknown source %d", int(opts.Source))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.MaxAge, DefaultMaxAge)
	def(&opts.MinRemaining, DefaultMinRemaining)
	def(&opts.LockTTL, DefaultLockTTL)
	def(&opts.WaitEmpty, DefaultWaitEmpty)
	def(&opts.Memo, DefaultMemo)
	switch {
	case opts.MaxAge < 0, opts.MinRemaining < 0, opts.WaitEmpty < 0:
		return nil, errors.New("ticketcache: MaxAge, MinRemaining and WaitEmpty must not be negative")
	case opts.LockTTL < 0 || opts.LockTTL >= overlap:
		return nil, fmt.Errorf("ticketcache: LockTTL %s: want under the provider's %s overlap", opts.LockTTL, overlap)
	case opts.Memo >= overlap:
		return nil, fmt.Errorf("ticketcache: Memo %s: want under the provider's %s overlap", opts.Memo, overlap)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Cache{rdb: rdb, opts: opts, clock: opts.Clock, log: opts.Logger, m: m, ticketBackoff: 100 * time.Millisecond}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c, nil
}

// Close waits for the refreshes this Cache runs in the background and
// starts no more. It does not close the Redis client.
func (c *Cache) Close() error {
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	c.bg.Wait()
	return nil
}

func (c *Cache) app(appID string) *appState {
	if st, ok := c.apps.Load(appID); ok {
		return st.(*appState)
	}
	st, _ := c.apps.LoadOrStore(appID, new(appState))
	return st.(*appState)
}

// Get returns the app's current ticket. When the pair is due for a refresh
// but still valid, Get returns it at once and one process refreshes in the
// background; when there is no usable ticket, Get refreshes or waits for the
// process that does, up to Options.WaitEmpty. Its errors name the app and
// the cause; those meaning "no ticket now, try later" match ErrNoTicket.
func (c *Cache) Get(ctx context.Context, appID string) (Ticket, error) {
	if err := checkAppID(appID); err != nil {
		return Ticket{}, err
	}
	st := c.app(appID)
	if m := st.memo.Load(); m != nil && m.t.Generation != st.rejected.Load() && c.clock.Now().Before(m.until) {
		return m.t, nil
	}
	for {
		st.mu.Lock()
		f := st.flight
		if f == nil {
			f = &flight{done: make(chan struct{})}
			st.flight = f
			st.mu.Unlock()
			c.lead(ctx, appID, st, f)
			return f.t, f.err
		}
		st.mu.Unlock()
		select {
		case <-f.done:
			if f.err != nil && f.abandoned && ctx.Err() == nil {
				continue // the leader gave up for itself, not for us
			}
			return f.t, f.err
		case <-ctx.Done():
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, ctx.Err())
		}
	}
}

// lead runs a flight and hands its outcome to the callers waiting on it,
// even when the fetch functions panic.
func (c *Cache) lead(ctx context.Context, appID string, st *appState, f *flight) {
	defer func() {
		st.mu.Lock()
		st.flight = nil
		st.mu.Unlock()
		close(f.done)
	}()
	f.err = errors.New("ticketcache: app " + appID + ": ticket load aborted")
	f.abandoned = true
	if c.opts.Source == External {
		f.t, f.err = c.loadExternal(ctx, appID, st)
	} else {
		f.t, f.err = c.loadOwn(ctx, appID, st)
	}
	f.abandoned = ctx.Err() != nil
}

func (c *Cache) loadOwn(ctx context.Context, appID string, st *appState) (Ticket, error) {
	var waitEnd time.Time
	for {
		e, _, err := readEntry(ctx, c.rdb, appID)
		if err != nil {
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, err)
		}
		now := c.clock.Now()
		reason := c.due(e, now)
		if reason == "" {
			return c.remember(st, e, now), nil
		}
		if c.usable(e, now) {
			// Others keep the current ticket while one process refreshes:
			// it stays valid through the provider's overlap.
			c.refreshInBackground(appID, st)
			return c.remember(st, e, now), nil
		}
		if err := st.recentFailure(now); err != nil {
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w: %w", appID, ErrNoTicket, err)
		}
		t, err := c.refresh(ctx, appID, st)
		switch {
		case err == nil:
			return t, nil
		case ctx.Err() != nil:
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, ctx.Err())
		case !errors.Is(err, errLocked):
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w: %w", appID, ErrNoTicket, err)
		}
		if err := c.wait(ctx, &waitEnd); err != nil {
			if ctx.Err() != nil {
				return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, err)
			}
			return Ticket{}, fmt.Errorf("ticketcache: app %s: waited %s for another process to refresh (%s): %w",
				appID, c.opts.WaitEmpty, reason, ErrNoTicket)
		}
	}
}

func (c *Cache) loadExternal(ctx context.Context, appID string, st *appState) (Ticket, error) {
	var waitEnd time.Time
	for {
		e, found, err := readEntry(ctx, c.rdb, appID)
		if err != nil {
			return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, err)
		}
		now := c.clock.Now()
		var why string
		switch {
		case !found:
			why = "no entry"
		case e.Ticket == "":
			why = "entry has no ticket"
		case !now.Before(e.TicketEnd()):
			why = "ticket expired"
		default:
			return c.remember(st, e, now), nil
		}
		if err := c.wait(ctx, &waitEnd); err != nil {
			if ctx.Err() != nil {
				return Ticket{}, fmt.Errorf("ticketcache: app %s: %w", appID, err)
			}
			return Ticket{}, fmt.Errorf("ticketcache: app %s: waited %s for the partner's refresher (%s at %s): %w",
				appID, c.opts.WaitEmpty, why, Key(appID), ErrNoTicket)
		}
	}
}

// wait sleeps until the next look at Redis; it fails once the bounded wait
// that began at its first call is over, or when ctx ends.
func (c *Cache) wait(ctx context.Context, end *time.Time) error {
	if end.IsZero() {
		*end = time.Now().Add(c.opts.WaitEmpty)
	}
	d := time.Until(*end)
	if d <= 0 {
		return ErrNoTicket
	}
	t := time.NewTimer(min(d, pollInterval))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// remember returns the entry's ticket and keeps it in the memo.
func (c *Cache) remember(st *appState, e Entry, now time.Time) Ticket {
	t := Ticket{Value: e.Ticket, Generation: e.Generation}
	if c.opts.Memo > 0 {
		until := now.Add(c.opts.Memo)
		if end := c.ticketDeath(e); end.Before(until) {
			until = end
		}
		st.memo.Store(&memo{t: t, until: until})
	}
	return t
}

// due returns why the entry needs a refresh, or "" when it does not.
func (c *Cache) due(e Entry, now time.Time) string {
	switch {
	case e.Ticket == "":
		return ReasonEmpty
	case e.Generation != 0 && e.RejectedGeneration == e.Generation:
		return ReasonRejected
	case e.NeedsTicket,
		c.short(e.TicketFetchedAt, e.TicketExpireIn, now),
		c.short(e.AccessTokenFetchedAt, e.AccessTokenExpireIn, now):
		return ReasonExpiry
	}
	born := e.AccessTokenFetchedAt
	if e.TicketFetchedAt.Before(born) {
		born = e.TicketFetchedAt
	}
	if now.Sub(born) >= c.opts.MaxAge {
		return ReasonAge
	}
	return ""
}

// short reports whether a credential has less than the minimum left.
func (c *Cache) short(fetched time.Time, life time.Duration, now time.Time) bool {
	if fetched.IsZero() {
		return true
	}
	least := c.opts.MinRemaining
	if life <= least {
		least = life / 2 // else a short-lived credential would be due at once
	}
	return fetched.Add(life).Sub(now) < least
}

// usable reports whether the entry's ticket may still be handed out.
func (c *Cache) usable(e Entry, now time.Time) bool {
	if e.Ticket == "" || e.Generation != 0 && e.RejectedGeneration == e.Generation {
		return false
	}
	return now.Before(c.ticketDeath(e))
}

// ticketDeath returns when the entry's ticket stops working: at its own end,
// at its token's end, or a minute after a newer token was fetched.
func (c *Cache) ticketDeath(e Entry) time.Time {
	end := e.TicketEnd()
	if t := e.AccessTokenEnd(); !t.IsZero() && t.Before(end) {
		end = t
	}
	if e.NeedsTicket {
		if t := e.AccessTokenFetchedAt.Add(overlap); t.Before(end) {
			end = t
		}
	}
	return end
}

func (st *appState) recentFailure(now time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.failed != nil && now.Before(st.failAt.Add(failureBackoff)) {
		return fmt.Errorf("last refresh failed (next try in %s): %w", st.failAt.Add(failureBackoff).Sub(now), st.failed)
	}
	return nil
}

func (st *appState) setFailure(now time.Time, err error) {
	st.mu.Lock()
	st.failAt, st.failed = now, err
	st.mu.Unlock()
}

// Reject reports that the provider refused a request signed with the ticket
// of this generation. If it is still the current generation, the entry is
// marked so that the next Get in any process refreshes the pair; rejections
// of an older generation, or repeated ones, change nothing. With source
// External it only logs: the partner's refresher owns the pair.
func (c *Cache) Reject(ctx context.Context, appID string, generation int64) error {
	if err := checkAppID(appID); err != nil {
		return err
	}
	c.app(appID).rejected.Store(generation)
	if c.opts.Source == External {
		c.log.Warn("provider refused the partner's ticket; the partner's refresher must replace it",
			zap.String("app", appID), zap.Int64("generation", generation))
		return nil
	}
	marked, err := rejectScript.Run(ctx, c.rdb, []string{Key(appID)}, generation).Int()
	if err != nil {
		return fmt.Errorf("ticketcache: app %s: mark generation %d rejected: %w", appID, generation, err)
	}
	if marked == 1 {
		c.log.Info("ticket generation rejected: the next Get refreshes",
			zap.String("app", appID), zap.Int64("generation", generation))
	}
	return nil
}

// AccessToken returns the app's current access token for a partner's
// backend (NONCE tickets for its SDK and H5 logins). It only reads Redis and
// never fetches: a partner fetching its own token would kill facesync's.
// Call it again rather than keeping the token: it changes about every
// MaxAge, and the previous one dies a minute later.
func (c *Cache) AccessToken(ctx context.Context, appID string) (string, error) {
	if err := checkAppID(appID); err != nil {
		return "", err
	}
	e, _, err := readEntry(ctx, c.rdb, appID)
	if err != nil {
		return "", fmt.Errorf("ticketcache: app %s: %w", appID, err)
	}
	if e.AccessToken == "" {
		return "", fmt.Errorf("ticketcache: app %s: %w", appID, ErrNoToken)
	}
	if !c.clock.Now().Before(e.AccessTokenEnd()) {
		return "", fmt.Errorf("ticketcache: app %s: access token expired: %w", appID, ErrNoToken)
	}
	return e.AccessToken, nil
}

// Maintain calls Get for each app every interval until ctx ends, so the pair
// stays fresh even when no task comes: partners reading AccessToken must
// always find a live token. Failures are logged. An interval of zero or
// less means 30 s. With source External it returns at once.
func (c *Cache) Maintain(ctx context.Context, appIDs []string, interval time.Duration) {
	if c.opts.Source == External {
		return
	}
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, id := range appIDs {
			if _, err := c.Get(ctx, id); err != nil && ctx.Err() == nil {
				c.log.Warn("keeping ticket fresh failed", zap.String("app", id), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
