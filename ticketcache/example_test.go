package ticketcache_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache"
)

// A partner's Go backend needs the app's access token for the NONCE tickets
// of its SDK or H5 logins. It reads the token facesync keeps in Redis and
// never fetches one itself: a token of its own would kill facesync's within
// a minute, and facesync's next one would kill the partner's.
func ExampleCache_AccessToken() {
	ctx := context.Background()
	srv, err := miniredis.Run() // the Redis shared with facesync (FACESYNC_REDIS_URL)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	// facesync's side, normally in its worker pods: it owns the refresh.
	worker, err := ticketcache.New(rdb, ticketcache.Options{
		FetchToken: func(context.Context, string) (ticketcache.Credential, error) {
			return ticketcache.Credential{Value: "token-from-the-provider", ExpiresIn: 7200 * time.Second}, nil
		},
		FetchTicket: func(context.Context, string, string) (ticketcache.Credential, error) {
			return ticketcache.Credential{Value: "sign-ticket", ExpiresIn: 3600 * time.Second}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()
	if _, err := worker.Get(ctx, "IDAXXXXX"); err != nil {
		log.Fatal(err)
	}

	// The partner's side: a Cache that only reads.
	reader, err := ticketcache.New(rdb, ticketcache.Options{Source: ticketcache.External})
	if err != nil {
		log.Fatal(err)
	}
	token, err := reader.AccessToken(ctx, "IDAXXXXX")
	if err != nil {
		log.Fatal(err) // errors.Is(err, ticketcache.ErrNoToken): none yet, try again shortly
	}
	fmt.Println("access token for NONCE tickets:", token)
	// Output: access token for NONCE tickets: token-from-the-provider
}

// A partner's backend that owns the refresh (facesync running with
// FACESYNC_TICKET_SOURCE=external) publishes each new pair; facesync's
// pods pick it up from Redis.
func ExamplePublish() {
	ctx := context.Background()
	srv, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	// The partner, after fetching a token and a SIGN ticket made with it:
	gen, err := ticketcache.Publish(ctx, rdb, "IDAXXXXX",
		ticketcache.Credential{Value: "partner-token", ExpiresIn: 7200 * time.Second},
		ticketcache.Credential{Value: "partner-ticket", ExpiresIn: 3600 * time.Second},
		time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published generation", gen)

	// facesync, reading only:
	c, err := ticketcache.New(rdb, ticketcache.Options{Source: ticketcache.External})
	if err != nil {
		log.Fatal(err)
	}
	tk, err := c.Get(ctx, "IDAXXXXX")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("facesync signs with generation", tk.Generation)
	// Output:
	// published generation 1
	// facesync signs with generation 1
}
