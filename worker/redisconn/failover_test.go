package redisconn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/redisconn"
)

// replicaPair starts a master and a replica of it that refuses stale reads
// once its master is gone (MASTERDOWN).
func replicaPair(t *testing.T) (master, replica *ticketcachetest.Server) {
	// No delay before the first full sync: the replica is in sync at once.
	master = ticketcachetest.StartServer(t, "--repl-diskless-sync-delay", "0")
	_, port, _ := net.SplitHostPort(master.Addr)
	replica = ticketcachetest.StartServer(t, "--replicaof", "127.0.0.1", port, "--replica-serve-stale-data", "no")
	c := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := c.Info(context.Background(), "replication").Val()
		if contains(info, "master_link_status:up") {
			return master, replica
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never in sync: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// The errors are the real ones: from a replica, a server that is gone, and
// asynq's wrapping of them.
func TestIsFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	defer rc.Close()

	readonly := rc.Set(ctx, "k", "v", 0).Err()
	aq := asynq.NewClientFromRedisClient(rc)
	_, asynqReadonly := aq.Enqueue(asynq.NewTask("t", nil))
	sc := redis.NewClient(&redis.Options{Addr: replica.Addr, MaxRetries: -1})
	defer sc.Close()

	master.Kill()
	var masterdown error
	deadline := time.Now().Add(10 * time.Second)
	for masterdown == nil || !contains(masterdown.Error(), "MASTERDOWN") {
		masterdown = sc.Get(ctx, "k").Err()
		if time.Now().After(deadline) {
			t.Fatalf("replica of a dead master answers GET with %v, want MASTERDOWN", masterdown)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mc := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1, DialerRetries: 1})
	defer mc.Close()
	refused := mc.Ping(ctx).Err()
	aqDown := asynq.NewClientFromRedisClient(mc)
	_, asynqRefused := aqDown.Enqueue(asynq.NewTask("t", nil))

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"READONLY from a replica", readonly, true},
		{"READONLY inside asynq's error", asynqReadonly, true},
		{"MASTERDOWN", masterdown, true},
		{"connection refused", refused, true},
		{"connection refused inside asynq's error", asynqRefused, true},
		{"ErrNotReplicated", fmt.Errorf("enqueue: %w", redisconn.ErrNotReplicated), true},
		{"ErrNotMaster", redisconn.ErrNotMaster, true},
		{"LOADING", errors.New("LOADING Redis is loading the dataset in memory"), true},
		{"nil", nil, false},
		{"redis.Nil", redis.Nil, false},
		{"a script error", ticketcachetest.NewDB(t).Client.Eval(ctx, "return redis.error_reply('BAD thing')", nil).Err(), false},
		{"wrong type", errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"context canceled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"task ID conflict", asynq.ErrTaskIDConflict, false},
	} {
		if tc.err == nil && tc.want {
			t.Errorf("%s: no error produced", tc.name)
			continue
		}
		if got := redisconn.IsFailover(tc.err); got != tc.want {
			t.Errorf("IsFailover(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if redisconn.Transient(tc.err) != redisconn.IsFailover(tc.err) {
			t.Errorf("Transient and IsFailover disagree on %v", tc.err)
		}
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	for _, tc := range []struct {
		addr string
		want error
	}{
		{master.Addr, nil},
		{replica.Addr, redisconn.ErrNotMaster},
	} {
		c := redis.NewClient(&redis.Options{Addr: tc.addr})
		if err := redisconn.Ready(ctx, c); !errors.Is(err, tc.want) {
			t.Errorf("Ready(%s) = %v, want %v", tc.addr, err, tc.want)
		}
		_ = c.Close()
	}
	cfg, err := redisconn.Parse("redis://"+replica.Addr+"/0", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Connect(ctx, time.Second); err == nil || !strings.Contains(err.Error(), "answered as a replica") ||
		!strings.Contains(err.Error(), "FACESYNC_REDIS_URL") {
		t.Errorf("Connect(replica) = %v, want a line saying it is a replica and naming FACESYNC_REDIS_URL", err)
	}
	master.Kill()
	c := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1})
	defer c.Close()
	if err := redisconn.Ready(ctx, c); err == nil || !redisconn.IsFailover(err) {
		t.Errorf("Ready(dead server) = %v, want a failover error", err)
	}
}

// ROLE refused by an ACL: Ready falls back on a write.
func TestReadyWithoutRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := ticketcachetest.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-role").Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "app", Password: "pw"})
	defer c.Close()
	if err := c.Do(ctx, "ROLE").Err(); err == nil {
		t.Fatal("ROLE allowed; the test needs it refused")
	}
	if err := redisconn.Ready(ctx, c); err != nil {
		t.Fatalf("Ready without ROLE on a master = %v, want nil", err)
	}
}

func TestWaitReplicaSingleNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := ticketcachetest.NewDB(t)
	if err := redisconn.WaitReplica(ctx, db.Client, 50*time.Millisecond); !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Errorf("WaitReplica without replicas = %v, want ErrNotReplicated", err)
	}
	if err := redisconn.WaitReplica(ctx, db.Client, 50*time.Millisecond, "no-such-key"); !errors.Is(err, redisconn.ErrLost) {
		t.Errorf("WaitReplica(missing key) = %v, want ErrLost", err)
	}
}

func TestWaitReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer mc.Close()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()

	// The write is made through asynq on its own client, so on another
	// connection than the wait's.
	other := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer other.Close()
	aq := asynq.NewClientFromRedisClient(other)
	if _, err := aq.Enqueue(asynq.NewTask("t", nil, asynq.TaskID("w1"), asynq.Queue("q"))); err != nil {
		t.Fatal(err)
	}
	key := redisconn.TaskKey("q", "w1")
	if err := redisconn.WaitReplica(ctx, mc, 5*time.Second, key); err != nil {
		t.Fatalf("WaitReplica = %v", err)
	}
	// The replica has the task the moment WAIT returned: no polling.
	if n := rc.Exists(ctx, key).Val(); n != 1 {
		t.Fatalf("replica has %d of %s after WaitReplica, want 1 (TaskKey wrong, or the wait did not wait)", n, key)
	}

	// A failover before the next write reaches the replica: the replica is
	// promoted, and the old master acknowledges a write it cannot pass on.
	if err := rc.ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := aq.Enqueue(asynq.NewTask("t", nil, asynq.TaskID("w2"), asynq.Queue("q"))); err != nil {
		t.Fatal(err)
	}
	key2 := redisconn.TaskKey("q", "w2")
	if err := redisconn.WaitReplica(ctx, mc, 200*time.Millisecond, key2); !errors.Is(err, redisconn.ErrNotReplicated) {
		t.Errorf("WaitReplica on a master left without replica = %v, want ErrNotReplicated", err)
	}
	if err := redisconn.WaitReplica(ctx, rc, 200*time.Millisecond, key2); !errors.Is(err, redisconn.ErrLost) {
		t.Errorf("WaitReplica on the new master without the write = %v, want ErrLost", err)
	}
}

// TaskKey must be where asynq keeps a task.
func TestTaskKey(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	aq := asynq.NewClientFromRedisClient(db.Client)
	if _, err := aq.Enqueue(asynq.NewTask("t", nil, asynq.TaskID("app:ord1"), asynq.Queue("facesync_result"))); err != nil {
		t.Fatal(err)
	}
	key := redisconn.TaskKey("facesync_result", "app:ord1")
	if n := db.Client.Exists(context.Background(), key).Val(); n != 1 {
		keys := db.Client.Keys(context.Background(), "*").Val()
		t.Fatalf("TaskKey = %q, not among asynq's keys %v", key, keys)
	}
}
