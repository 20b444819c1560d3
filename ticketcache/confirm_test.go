package ticketcache_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/facesync/facesync/ticketcache"
)

// TestConfirmFuncRefusedMintsNothing: a lock that ConfirmFunc does not
// confirm (no replica acknowledged it) counts as not held: nothing is
// minted, the lock is released, and the next confirmed refresh mints once.
func TestConfirmFuncRefusedMintsNothing(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	refuse.Store(true)
	var calls atomic.Int32
	var gotKeys []string
	notReplicated := errors.New("no replica acknowledged the write in time")
	b := setup(t, func(o *ticketcache.Options) {
		o.ConfirmFunc = func(_ context.Context, keys ...string) error {
			calls.Add(1)
			gotKeys = keys
			if refuse.Load() {
				return notReplicated
			}
			return nil
		}
	})
	_, err := b.cache.Get(t.Context(), app)
	if !errors.Is(err, notReplicated) || !errors.Is(err, ticketcache.ErrNoTicket) {
		t.Fatalf("Get with the lock unconfirmed = %v, want ErrNoTicket wrapping the confirm error", err)
	}
	if tokens, tickets, tokenCalls, _ := b.prov.counts(); tokens != 0 || tickets != 0 || tokenCalls != 0 {
		t.Errorf("mints with the lock unconfirmed = %d tokens (%d calls), %d tickets, want none", tokens, tokenCalls, tickets)
	}
	if !slices.Equal(gotKeys, []string{ticketcache.LockKey(app)}) {
		t.Errorf("ConfirmFunc keys = %v, want [%s]", gotKeys, ticketcache.LockKey(app))
	}
	if b.mr.Exists(ticketcache.LockKey(app)) {
		t.Errorf("the unconfirmed lock was left in Redis")
	}

	refuse.Store(false)
	c2, _ := b.pod(t) // a pod without the first one's failure memory
	mustGet(t, c2)
	if tokens, tickets, _, _ := b.prov.counts(); tokens != 1 || tickets != 1 {
		t.Errorf("mints after the lock was confirmed = %d tokens, %d tickets, want 1, 1", tokens, tickets)
	}
	if calls.Load() != 2 {
		t.Errorf("ConfirmFunc calls = %d, want 2 (one per lock taken)", calls.Load())
	}
}
