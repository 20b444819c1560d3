package redisconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned by WaitReplica when no replica acknowledged
// in time. The write may still be on the master alone, where a failover
// would lose it: do not report it as done. IsFailover counts it.
var ErrNotReplicated = errors.New("no replica acknowledged the write in time")

// ErrLost is returned by WaitReplica when a key that must exist is not on
// the master: a write acknowledged by a master that has since been replaced
// was not replicated and is gone. Write it again.
var ErrLost = errors.New("write lost in a failover: not on the current master")

// probeKey is the key WaitReplica writes to put an offset on its own
// connection; one key for the fleet, expiring, so nothing accumulates.
const probeKey = "facesync:replica-probe"

// Conner is the part of *redis.Client that WaitReplica needs: one
// connection taken from the pool.
type Conner interface {
	Conn() *redis.Conn
}

// WaitReplica returns once at least one replica has every write the
// current master had acknowledged before the call, including writes made on
// other connections (an asynq enqueue runs on any pooled connection). Call
// it after a write and before reporting it done, in Sentinel mode only (a
// single node has no replica to wait for).
//
// Redis's WAIT waits only for the replication offset of its own
// connection's last write. So, on one connection, WaitReplica checks that
// every key in mustExist is there (EXISTS), writes a small expiring probe
// key, and then sends WAIT 1. The master's replication stream is one
// ordered log: a replica that acknowledged the probe has everything the
// master applied before it, the earlier write included. The EXISTS check
// covers a failover between the write and the probe: the probe then lands
// on the new master, and only the key's presence there proves the write
// survived (ErrLost otherwise). Pass the keys the write created (TaskKey
// for an asynq task).
//
// It returns ErrNotReplicated when no replica acknowledges within timeout,
// and the Redis error (IsFailover) when the master cannot be reached.
func WaitReplica(ctx context.Context, rdb Conner, timeout time.Duration, mustExist ...string) error {
	return waitReplicas(ctx, rdb, 1, timeout, mustExist...)
}

// waitReplicas is WaitReplica for n replicas.
func waitReplicas(ctx context.Context, rdb Conner, n int, timeout time.Duration, mustExist ...string) error {
	if timeout <= 0 {
		timeout = time.Second // WAIT's 0 would block for ever
	}
	cn := rdb.Conn()
	defer cn.Close()
	var exists *redis.IntCmd
	_, err := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		if len(mustExist) > 0 {
			exists = p.Exists(ctx, mustExist...)
		}
		p.Incr(ctx, probeKey)
		p.PExpire(ctx, probeKey, time.Minute)
		return nil
	})
	if err != nil {
		return fmt.Errorf("replica wait: %w", err)
	}
	if exists != nil && exists.Val() != int64(len(mustExist)) {
		return ErrLost
	}
	got, err := cn.Wait(ctx, n, timeout).Result()
	if err != nil {
		return fmt.Errorf("replica wait: %w", err)
	}
	if got < int64(n) {
		return ErrNotReplicated
	}
	return nil
}

// TaskKey is the Redis key asynq v0.26 keeps a task's message under
// (internal/base.TaskKey), for WaitReplica's mustExist. facesync's tasks
// are retained after they finish (tasks.DefaultRetention), so the key is
// there even when a worker took the task at once. The redisconn tests
// check it against asynq itself.
func TaskKey(queue, taskID string) string {
	return "asynq:{" + queue + "}:t:" + taskID
}
