package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ackKey is the API's one key of its own: a write that WAIT can wait for.
const ackKey = "facesync:api:ack"

// ErrNotReplicated reports an enqueue no replica acknowledged in time.
var ErrNotReplicated = errors.New("not acknowledged by a replica in time")

// WaitReplicas returns a Deps.Replicated hook that waits until replicas
// replicas have everything written to the master so far (Redis WAIT),
// for at most timeout.
//
// WAIT counts the writes of its own connection, and asynq's enqueue ran on
// a connection of asynq's. So the hook writes a small key of the API's own
// and WAITs in one pipeline, which go-redis sends on one connection: the
// replication stream is ordered, so a replica that has this write has the
// enqueue that came before it too.
func WaitReplicas(rdb redis.UniversalClient, replicas int, timeout time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var wait *redis.Cmd
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, ackKey, "1", time.Minute)
			wait = p.Do(ctx, "WAIT", replicas, timeout.Milliseconds())
			return nil
		})
		if err != nil {
			return fmt.Errorf("wait for replicas: %w", err)
		}
		n, err := wait.Int()
		if err != nil {
			return fmt.Errorf("wait for replicas: %w", err)
		}
		if n < replicas {
			return fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, n, replicas, timeout)
		}
		return nil
	}
}
