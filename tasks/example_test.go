package tasks_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/tasks"
)

// A partner backend enqueues one task when a user's face session ends, and
// later reads the decision record the worker writes.
func Example() {
	// In production this is the Redis the facesync workers use
	// (FACESYNC_REDIS_URL); an in-memory one keeps the example runnable.
	mr, err := miniredis.Run()
	if err != nil {
		fmt.Println("miniredis:", err)
		return
	}
	defer mr.Close()
	ctx := context.Background()

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: mr.Addr()})
	defer client.Close()

	order := tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: tasks.GetFileBoth}
	dup, err := tasks.Enqueue(ctx, client, order)
	fmt.Println("enqueued:", err == nil && !dup)

	// Enqueueing the same order again is harmless: it is reported, not done
	// twice, whatever state the first task is in. One that asynq archived
	// without a decision is run again by the fleet itself, so a duplicate
	// needs no special handling.
	dup, err = tasks.Enqueue(ctx, client, order)
	fmt.Println("duplicate:", dup, err)

	// The worker writes the decision as JSON under this key (see the README
	// for the record's fields). Until then there is none.
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	record, err := rdb.Get(ctx, "facesync:decision:TIDA0001:ord0001").Result()
	switch {
	case errors.Is(err, redis.Nil):
		fmt.Println("no decision yet")
	case err != nil:
		fmt.Println("redis:", err)
	default:
		fmt.Println(record)
	}
	// Output:
	// enqueued: true
	// duplicate: true <nil>
	// no decision yet
}
