package ticketcache

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// writeTimeout bounds a Redis write that must happen even though the
// caller's context ended (storing a token already minted, releasing the
// lock); the owner check keeps a late write harmless.
const writeTimeout = 2 * time.Second

// writeTokenScript stores a freshly minted access token, only for the lock's
// owner. KEYS entry, lock; ARGV owner, token, fetched ms, lifetime s.
var writeTokenScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[2], 'access_token_fetched_at_ms', ARGV[3],
  'access_token_expire_in_s', ARGV[4], 'needs_ticket', '1')
return 1
`)

// writeTicketScript stores a ticket made with the entry's access token as
// the next generation, only for the lock's owner, and returns the generation
// (0 when the caller no longer owns the lock). KEYS entry, lock; ARGV owner,
// ticket, fetched ms, lifetime s.
var writeTicketScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local gen = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'ticket', ARGV[2], 'ticket_fetched_at_ms', ARGV[3], 'ticket_expire_in_s', ARGV[4])
redis.call('HDEL', KEYS[1], 'needs_ticket', 'rejected_generation')
return gen
`)

// rejectScript marks the current generation rejected, once. KEYS entry;
// ARGV generation. It returns 1 when it marked.
var rejectScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'rejected_generation') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rejected_generation', ARGV[1])
return 1
`)

// unlockScript deletes the lock only for its owner. KEYS lock; ARGV owner.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// refreshInBackground starts a refresh unless one runs in this process, for
// a pair that is due but still usable.
func (c *Cache) refreshInBackground(appID string, st *appState) {
	if st.recentFailure(c.clock.Now()) != nil {
		return
	}
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed || !st.refreshing.CompareAndSwap(false, true) {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer st.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.LockTTL)
		defer cancel()
		// Failures are logged and counted inside; callers keep the current
		// ticket meanwhile.
		_, _ = c.refresh(ctx, appID, st)
	}()
}

// refresh takes the app's lock and, if the pair is still due, fetches a new
// one. It returns errLocked when another process holds the lock. Its errors
// lack the app prefix.
func (c *Cache) refresh(ctx context.Context, appID string, st *appState) (Ticket, error) {
	owner := rand.Text()
	ok, err := c.rdb.SetNX(ctx, LockKey(appID), owner, c.opts.LockTTL).Result()
	if err != nil {
		return Ticket{}, fmt.Errorf("take refresh lock: %w", err)
	}
	if !ok {
		return Ticket{}, errLocked
	}
	start := time.Now()
	defer c.unlock(ctx, appID, owner)
	if c.opts.ConfirmFunc != nil {
		if err := c.opts.ConfirmFunc(ctx, LockKey(appID)); err != nil {
			return Ticket{}, fmt.Errorf("confirm refresh lock: %w", err)
		}
	}
	// Give up early enough to write before the lock expires.
	ctx, cancel := context.WithDeadline(ctx, start.Add(c.opts.LockTTL*4/5))
	defer cancel()

	// Another process may have refreshed between our read and our lock.
	e, _, err := readEntry(ctx, c.rdb, appID)
	if err != nil {
		return Ticket{}, err
	}
	now := c.clock.Now()
	reason := c.due(e, now)
	if reason == "" {
		return c.remember(st, e, now), nil
	}
	c.m.refreshes.WithLabelValues(appID, reason).Inc()
	e, minted, err := c.fetchPair(ctx, appID, owner, e, now)
	d := time.Since(start)
	c.m.duration.WithLabelValues(appID).Observe(d.Seconds())
	if err != nil {
		c.m.failures.WithLabelValues(appID).Inc()
		st.setFailure(c.clock.Now(), err)
		msg := "ticket refresh failed"
		if c.final(err) {
			msg = "ticket refresh stopped: the provider refused the app's request (an account or request problem, not retried)"
		}
		c.log.Warn(msg, zap.String("app", appID), zap.String("reason", reason),
			zap.Bool("new_access_token", minted), zap.Duration("duration", d), zap.Error(err))
		return Ticket{}, err
	}
	st.setFailure(time.Time{}, nil)
	c.log.Info("ticket refreshed", zap.String("app", appID), zap.String("reason", reason),
		zap.Int64("generation", e.Generation), zap.Bool("new_access_token", minted), zap.Duration("duration", d))
	return c.remember(st, e, c.clock.Now()), nil
}

// fetchPair fetches one access token (unless the entry holds one minted by
// an earlier refresher whose ticket fetch failed) and one ticket made with
// it, storing each as soon as it arrives. It returns the new entry and
// whether a token was minted.
func (c *Cache) fetchPair(ctx context.Context, appID, owner string, e Entry, now time.Time) (Entry, bool, error) {
	keys := []string{Key(appID), LockKey(appID)}
	minted := false
	if !c.reusableToken(e, now) {
		tok, err := c.opts.FetchToken(ctx, appID)
		if err == nil {
			err = checkCredential(tok)
		}
		if err != nil {
			return Entry{}, false, fmt.Errorf("fetch access token: %w", err)
		}
		minted = true
		// Stored at once, even if our context has just ended: the previous
		// token dies within a minute now, partners must switch to this one,
		// and a successor must reuse it rather than mint another.
		at := c.clock.Now()
		n, err := c.runWrite(ctx, writeTokenScript, keys, owner, tok.Value, at, tok.ExpiresIn)
		if err != nil {
			return Entry{}, true, fmt.Errorf("store access token: %w", err)
		}
		if n == 0 {
			return Entry{}, true, errLostLock
		}
		e.AccessToken, e.AccessTokenFetchedAt, e.AccessTokenExpireIn = tok.Value, stored(at), tok.ExpiresIn.Truncate(time.Second)
		e.NeedsTicket = true
	}
	tk, err := c.fetchTicket(ctx, appID, e.AccessToken)
	if err != nil {
		return Entry{}, minted, err
	}
	at := c.clock.Now()
	gen, err := c.runWrite(ctx, writeTicketScript, keys, owner, tk.Value, at, tk.ExpiresIn)
	if err != nil {
		return Entry{}, minted, fmt.Errorf("store ticket: %w", err)
	}
	if gen == 0 {
		return Entry{}, minted, errLostLock
	}
	e.Ticket, e.TicketFetchedAt, e.TicketExpireIn = tk.Value, stored(at), tk.ExpiresIn.Truncate(time.Second)
	e.Generation, e.RejectedGeneration, e.NeedsTicket = gen, 0, false
	return e, minted, nil
}

// reusableToken reports whether the entry holds a token newer than its
// ticket and fresh enough to make the next ticket with.
func (c *Cache) reusableToken(e Entry, now time.Time) bool {
	return e.NeedsTicket && e.AccessToken != "" &&
		!c.short(e.AccessTokenFetchedAt, e.AccessTokenExpireIn, now) &&
		now.Sub(e.AccessTokenFetchedAt) < c.opts.MaxAge
}

// fetchTicket asks for a ticket with one token a few times: minting another
// token instead would kill the one we have.
func (c *Cache) fetchTicket(ctx context.Context, appID, token string) (Credential, error) {
	backoff := c.ticketBackoff
	attempt := 1
	for ; ; attempt++ {
		tk, err := c.opts.FetchTicket(ctx, appID, token)
		if err == nil {
			if err = checkCredential(tk); err == nil {
				return tk, nil
			}
		}
		if attempt == ticketAttempts || ctx.Err() != nil || c.final(err) {
			return Credential{}, fmt.Errorf("fetch ticket (%d attempts with one access token): %w", attempt, err)
		}
		c.log.Info("ticket fetch failed; retrying with the same access token",
			zap.String("app", appID), zap.Int("attempt", attempt), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return Credential{}, fmt.Errorf("fetch ticket (%d attempts with one access token): %w", attempt, err)
		case <-t.C:
		}
		backoff *= 2
	}
}

// final reports whether err is one Options.Final says no retry mends.
func (c *Cache) final(err error) bool {
	return err != nil && c.opts.Final != nil && c.opts.Final(err)
}

// runWrite runs an owner-checked write script with a context that outlives
// the caller's by writeTimeout at most.
func (c *Cache) runWrite(ctx context.Context, s *redis.Script, keys []string, owner, value string, at time.Time, life time.Duration) (int64, error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	return s.Run(wctx, c.rdb, keys, owner, value, strconv.FormatInt(at.UnixMilli(), 10), seconds(life)).Int64()
}

// unlock releases the lock if we still own it. A failure only delays the
// next refresher until the lock expires.
func (c *Cache) unlock(ctx context.Context, appID, owner string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if err := unlockScript.Run(ctx, c.rdb, []string{LockKey(appID)}, owner).Err(); err != nil {
		c.log.Warn("release of the refresh lock failed; it expires by itself", zap.String("app", appID),
			zap.Duration("lock_ttl", c.opts.LockTTL), zap.Error(err))
	}
}

// stored returns t as the entry keeps it, to the millisecond.
func stored(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()) }
