package ticketcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
)

func benchCache(b *testing.B, memo time.Duration) *ticketcache.Cache {
	b.Helper()
	db := ticketcachetest.NewDB(b)
	prov := newProvider(newFakeClock())
	c, err := ticketcache.New(db.Client, ticketcache.Options{
		FetchToken:  prov.FetchToken,
		FetchTicket: prov.FetchTicket,
		Clock:       prov.clock, // frozen: the memo never ends, the pair never ages
		Memo:        memo,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if _, err := c.Get(context.Background(), app); err != nil {
		b.Fatal(err)
	}
	return c
}

func benchGet(b *testing.B, c *ticketcache.Cache) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, app); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMemoHit is the hot path: the ticket from the process's memo.
func BenchmarkGetMemoHit(b *testing.B) { benchGet(b, benchCache(b, ticketcache.DefaultMemo)) }

// BenchmarkGetRedisHit reads the entry from a real redis-server on every call.
func BenchmarkGetRedisHit(b *testing.B) { benchGet(b, benchCache(b, -1)) }
