package queuemetrics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/queuemetrics"
)

// TestMain keeps go-redis from logging the refused dials of TestRedisDown.
func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// Task types of the fixture: each sends a task to one state.
const (
	typeFail  = "test:fail"  // handler fails: retry, an hour later
	typeSkip  = "test:skip"  // handler fails with SkipRetry: archived
	typeBlock = "test:block" // handler runs until the test ends: active
	typeOK    = "test:ok"    // handler succeeds: completed, retained
	typeIdle  = "test:idle"  // never run: pending or scheduled
)

// fixture is a real asynq server and client on a clean database.
type fixture struct {
	db        *ticketcachetest.DB
	opt       asynq.RedisClientOpt
	client    *asynq.Client
	inspector *asynq.Inspector
	server    *asynq.Server
	blocking  atomic.Int64
}

// want is the number of tasks of queue i in each state: all different, so
// a key read for the wrong state or queue shows.
func want(i int) queuemetrics.Stats {
	return queuemetrics.Stats{
		Retry: int64(i + 1), Archived: int64(i + 2), Active: int64(i + 1),
		Pending: int64(i + 3), Scheduled: int64(i + 4),
	}
}

// newFixture starts an asynq server on every facesync queue with exactly
// as many slots as want's active tasks plus spare, and the given janitor
// interval (how long expired completed tasks stay listed).
func newFixture(t *testing.T, spare int, janitor time.Duration) *fixture {
	t.Helper()
	db := ticketcachetest.NewDB(t)
	f := &fixture{db: db, opt: asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}}
	f.client = asynq.NewClient(f.opt)
	f.inspector = asynq.NewInspector(f.opt)
	active := 0
	queues := map[string]int{}
	for i, q := range queuemetrics.Queues {
		active += int(want(i).Active)
		queues[q] = 1
	}
	release := make(chan struct{})
	f.server = asynq.NewServer(f.opt, asynq.Config{
		Concurrency:              active + spare,
		Queues:                   queues,
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: time.Hour,
		JanitorInterval:          janitor,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:                 asynq.FatalLevel,
		ShutdownTimeout:          5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(typeFail, func(context.Context, *asynq.Task) error { return errors.New("fails on purpose") })
	mux.HandleFunc(typeSkip, func(context.Context, *asynq.Task) error {
		return fmt.Errorf("invalid on purpose: %w", asynq.SkipRetry)
	})
	mux.HandleFunc(typeOK, func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc(typeBlock, func(ctx context.Context, _ *asynq.Task) error {
		f.blocking.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err := f.server.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(func() {
		close(release)
		f.server.Shutdown()
		_ = f.client.Close()
		_ = f.inspector.Close()
	})
	return f
}

func (f *fixture) enqueue(t *testing.T, typ, queue string, n int, opts ...asynq.Option) {
	t.Helper()
	for k := 0; k < n; k++ {
		if _, err := f.client.Enqueue(asynq.NewTask(typ, nil), append([]asynq.Option{asynq.Queue(queue), asynq.MaxRetry(5)}, opts...)...); err != nil {
			t.Fatalf("enqueue %s on %s: %v", typ, queue, err)
		}
	}
}

// waitFor polls until ok or fails the test after a bounded wait.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queueInfo is the Inspector's view, or nil when it fails.
func (f *fixture) queueInfo(q string) *asynq.QueueInfo {
	qi, err := f.inspector.GetQueueInfo(q)
	if err != nil {
		return nil
	}
	return qi
}

// populate puts every queue i's tasks into the states want(i) lists, plus
// completed ones retained for each duration of retain: first the tasks the
// server runs (retry, archived, completed, active: the active ones fill
// every slot but spare), then, with the queues paused so that even spare
// slots take nothing more, pending and scheduled ones.
func (f *fixture) populate(t *testing.T, retain ...time.Duration) {
	t.Helper()
	for i, q := range queuemetrics.Queues {
		w := want(i)
		f.enqueue(t, typeFail, q, int(w.Retry))
		f.enqueue(t, typeSkip, q, int(w.Archived))
		for _, r := range retain {
			f.enqueue(t, typeOK, q, 1, asynq.Retention(r))
		}
	}
	for i, q := range queuemetrics.Queues {
		w := want(i)
		waitFor(t, "retry, archived and completed tasks on "+q, func() bool {
			qi := f.queueInfo(q)
			return qi != nil && qi.Retry == int(w.Retry) && qi.Archived == int(w.Archived) && qi.Completed == len(retain)
		})
	}
	var active int64
	for i, q := range queuemetrics.Queues {
		f.enqueue(t, typeBlock, q, int(want(i).Active))
		active += want(i).Active
	}
	waitFor(t, "active tasks", func() bool { return f.blocking.Load() == active })
	for i, q := range queuemetrics.Queues {
		if err := f.inspector.PauseQueue(q); err != nil {
			t.Fatalf("pause %s: %v", q, err)
		}
		f.enqueue(t, typeIdle, q, int(want(i).Pending))
		f.enqueue(t, typeIdle, q, int(want(i).Scheduled), asynq.ProcessIn(time.Hour))
	}
}

// roundTrips counts what a go-redis client sends: single commands and
// pipelines, each one round trip; the handshake of a new connection
// (HELLO, CLIENT SETINFO, SELECT), which also passes the hooks, is not
// counted.
type roundTrips struct{ single, pipelines atomic.Int64 }

func handshake(cmds ...redis.Cmder) bool {
	for _, c := range cmds {
		switch c.Name() {
		case "hello", "client", "select", "auth":
		default:
			return false
		}
	}
	return true
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			r.single.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !handshake(cmds...) {
			r.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}
