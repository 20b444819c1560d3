package ticketcachetest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestNewDBIsolated(t *testing.T) {
	t.Parallel()
	a, b := NewDB(t), NewDB(t)
	if a.DB == b.DB {
		t.Fatalf("NewDB twice gave db %d both times", a.DB)
	}
	ctx := context.Background()
	if err := a.Client.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := b.Client.Exists(ctx, "k").Val(); n != 0 {
		t.Fatalf("key written in db %d visible in db %d", a.DB, b.DB)
	}
}

func TestServerRestartKeepsAOF(t *testing.T) {
	t.Parallel()
	srv := StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := c.Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("after restart Get(k) = %q, want %q", got, "v")
	}
}
