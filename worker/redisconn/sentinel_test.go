package redisconn_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/redisconn"
)

const (
	haQueue = "ha"
	haDB    = 3 // not 0, so that a dropped DB number shows
)

// quietLogger keeps asynq's per-poll failover errors out of the test log.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// haRun is traffic through asynq over Sentinel: an enqueuer confirming
// each task with WaitReplica, and a server recording what it processed.
type haRun struct {
	s   *ticketcachetest.Sentinels
	cfg *redisconn.Config
	rdb *redis.Client

	mu        sync.Mutex
	writes    map[string]time.Time // go-redis INCR number -> when it succeeded
	notReady  []time.Time          // when Ready failed
	confirmed map[string]time.Time // task ID -> when WaitReplica confirmed it
	processed map[string]time.Time // task ID -> first time a handler ran it
	errs      int
}

// setupHA starts the deployment and a worker built from the URL: the asynq
// server shares the go-redis client (shared) or has its own pool from
// AsynqConnOpt.
func setupHA(t *testing.T, shared bool, replicas int) *haRun {
	t.Helper()
	s := ticketcachetest.StartSentinels(t, ticketcachetest.SentinelOptions{
		Replicas: replicas, Password: "node-pw", SentinelPassword: "sentinel-pw"})
	cfg, err := redisconn.Parse(s.URL(haDB), "")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Sentinel() {
		t.Fatal("Sentinel() = false for a redis-sentinel:// URL")
	}
	cfg.PoolSize = 32
	rdb, err := cfg.Connect(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	r := &haRun{s: s, cfg: cfg, rdb: rdb, writes: map[string]time.Time{}, confirmed: map[string]time.Time{}, processed: map[string]time.Time{}}

	acfg := asynq.Config{
		Concurrency: 4, Queues: map[string]int{haQueue: 1}, TaskCheckInterval: 20 * time.Millisecond,
		Logger: quietLogger{}, ShutdownTimeout: time.Second,
	}
	var srv *asynq.Server
	if shared {
		srv = asynq.NewServerFromRedisClient(rdb, acfg)
	} else {
		srv = asynq.NewServer(cfg.AsynqConnOpt(), acfg)
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc("ha:task", func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		r.mu.Lock()
		if _, ok := r.processed[id]; !ok {
			r.processed[id] = time.Now()
		}
		r.mu.Unlock()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return r
}

// enqueue runs until ctx ends, one task every 20ms, each confirmed by
// WaitReplica before it counts.
func (r *haRun) enqueue(ctx context.Context, client *asynq.Client) {
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("task%05d", i)
		_, err := client.EnqueueContext(ctx, asynq.NewTask("ha:task", nil,
			asynq.TaskID(id), asynq.Queue(haQueue), asynq.Retention(time.Hour)))
		if err == nil {
			err = redisconn.WaitReplica(ctx, r.rdb, 500*time.Millisecond, redisconn.TaskKey(haQueue, id))
		}
		r.mu.Lock()
		if err == nil {
			r.confirmed[id] = time.Now()
		} else if ctx.Err() == nil {
			r.errs++
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// write increments a counter through go-redis every 10ms until ctx ends:
// a steady beat, so its longest pause is the write outage.
func (r *haRun) write(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := r.rdb.Incr(ctx, "beat").Result()
		if err == nil {
			r.mu.Lock()
			r.writes[fmt.Sprint(n)] = time.Now()
			r.mu.Unlock()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ready polls Ready as /readyz would, recording when it fails.
func (r *haRun) ready(ctx context.Context) {
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := redisconn.Ready(c, r.rdb)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.mu.Lock()
			r.notReady = append(r.notReady, time.Now())
			r.mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sentinelEvents records the first time any sentinel announces each
// failover step.
func sentinelEvents(ctx context.Context, s *ticketcachetest.Sentinels) func(t0 time.Time) []string {
	var mu sync.Mutex
	first := map[string]time.Time{}
	var closers []func()
	for _, a := range s.SentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a, Password: "sentinel-pw"})
		ps := sc.PSubscribe(ctx, "+odown", "+promoted-slave", "+switch-master", "+convert-to-slave", "+slave-reconf-done")
		closers = append(closers, func() { _ = ps.Close(); _ = sc.Close() })
		go func() {
			for m := range ps.Channel() {
				mu.Lock()
				if _, ok := first[m.Channel]; !ok {
					first[m.Channel] = time.Now()
				}
				mu.Unlock()
			}
		}()
	}
	return func(t0 time.Time) []string {
		for _, c := range closers {
			c()
		}
		mu.Lock()
		defer mu.Unlock()
		names := make([]string, 0, len(first))
		for e := range first {
			names = append(names, e)
		}
		sort.Slice(names, func(i, j int) bool { return first[names[i]].Before(first[names[j]]) })
		for i, e := range names {
			names[i] = fmt.Sprintf("%s@%.1fs", e, first[e].Sub(t0).Seconds())
		}
		return names
	}
}

func (r *haRun) counts(since time.Time) (confirmed, processedOfThem int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, at := range r.confirmed {
		if at.After(since) {
			confirmed++
			if _, ok := r.processed[id]; ok {
				processedOfThem++
			}
		}
	}
	return confirmed, processedOfThem
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recovery is the first time after t0 that ends the longest gap between
// consecutive events: when writes (or processing) resumed.
func recovery(t0 time.Time, events map[string]time.Time) (resumed time.Duration, gap time.Duration) {
	var ts []time.Time
	for _, at := range events {
		ts = append(ts, at)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	for i := 1; i < len(ts); i++ {
		if ts[i].After(t0) && ts[i].Sub(ts[i-1]) > gap {
			gap = ts[i].Sub(ts[i-1])
			resumed = ts[i].Sub(t0)
		}
	}
	return resumed, gap
}

// runFailover sends traffic, calls fail, and checks that the client
// follows the new master and that every confirmed task is processed.
func runFailover(t *testing.T, shared bool, replicas int, fail func(ctx context.Context, r *haRun) (old string)) *haRun {
	r := setupHA(t, shared, replicas)
	ctx, cancel := context.WithCancel(context.Background())
	client := asynq.NewClientFromRedisClient(r.rdb)
	events := sentinelEvents(ctx, r.s)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.ready(ctx) }()
	go func() { defer wg.Done(); r.enqueue(ctx, client) }()
	go func() { defer wg.Done(); r.write(ctx) }()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, 10*time.Second, "20 tasks confirmed before the failover", func() bool {
		n, _ := r.counts(time.Time{})
		return n >= 20
	})
	t0 := time.Now()
	old := fail(context.Background(), r)
	newMaster, err := r.s.WaitNewMaster(context.Background(), old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(t0)
	waitFor(t, 30*time.Second, "20 tasks confirmed and processed after the failover", func() bool {
		_, p := r.counts(t0)
		return p >= 20
	})
	cancel()
	<-done

	// Every confirmed task is processed, the ones confirmed by the old
	// master just before it went included.
	var lost []string
	waitFor(t, 40*time.Second, "every confirmed task processed", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		lost = lost[:0]
		for id := range r.confirmed {
			if _, ok := r.processed[id]; !ok {
				lost = append(lost, id)
			}
		}
		return len(lost) == 0
	})

	// The shared client now writes to the new master, in the URL's DB.
	if err := redisconn.Ready(context.Background(), r.rdb); err != nil {
		t.Fatalf("Ready after the failover = %v", err)
	}
	if err := r.rdb.Set(context.Background(), "after", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	nc := r.s.NodeClient(newMaster, haDB)
	defer nc.Close()
	if v := nc.Get(context.Background(), "after").Val(); v != "1" {
		t.Fatalf("new master %s db %d has after=%q, want 1: the client did not follow it", newMaster, haDB, v)
	}
	n0 := r.s.NodeClient(newMaster, 0)
	defer n0.Close()
	if n := n0.DBSize(context.Background()).Val(); n != 0 {
		t.Fatalf("db 0 of the master holds %d keys; everything belongs in db %d", n, haDB)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	wrote, wgap := recovery(t0, r.writes)
	confirmed, cgap := recovery(t0, r.confirmed)
	ran, pgap := recovery(t0, r.processed)
	var unready time.Duration
	if n := len(r.notReady); n > 0 {
		unready = r.notReady[n-1].Sub(r.notReady[0])
	}
	t.Logf("figures (%d replica(s)): new master after %.1fs; go-redis writes resumed %.1fs after the failover (paused %.1fs), "+
		"WAIT-confirmed enqueues %.1fs (paused %.1fs), processing %.1fs (paused %.1fs); "+
		"%d confirmed, %d processed, %d confirmed but lost, %d attempts unconfirmed; Ready failed %d times over %.1fs; sentinel: %v",
		replicas, promoted.Seconds(), wrote.Seconds(), wgap.Seconds(), confirmed.Seconds(), cgap.Seconds(),
		ran.Seconds(), pgap.Seconds(), len(r.confirmed), len(r.processed), len(lost), r.errs, len(r.notReady), unready.Seconds(), events(t0))
	return r
}

// SENTINEL FAILOVER: the old master is demoted and follows the new one.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	_ = runFailover(t, true, 1, func(ctx context.Context, r *haRun) string {
		old, err := r.s.Failover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return old
	})
}

// SIGKILL of the master: the sentinels agree it is down and promote the
// replica. With one replica, nothing can be confirmed until the killed node
// is back (as a replica of the new master), which is what a supervisor
// restarting it gives.
func TestSentinelMasterKilled(t *testing.T) {
	t.Parallel()
	r := runFailover(t, false, 1, func(ctx context.Context, r *haRun) string {
		old, err := r.s.KillMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		t.Cleanup(wg.Wait) // before the deployment is stopped
		go func() {
			defer wg.Done()
			nm, err := r.s.WaitNewMaster(ctx, old, 30*time.Second)
			if err != nil {
				return // the test fails on its own wait
			}
			if err := r.s.Restart(r.s.Node(old)); err != nil {
				t.Errorf("restart %s: %v", old, err)
				return
			}
			if err := r.s.WaitReplicas(ctx, nm, 1, 30*time.Second); err != nil {
				t.Errorf("%v", err)
			}
		}()
		return old
	})
	assertUnready(t, r)
}

// assertUnready checks /readyz's view of a killed master: not ready while no
// master was reachable (ready again is checked by runFailover).
func assertUnready(t *testing.T, r *haRun) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notReady) == 0 {
		t.Error("Ready never failed while the master was dead and not yet replaced")
	}
}

// SIGKILL with two replicas: the other replica follows the new master during
// the failover, so writes are confirmed again as soon as it is promoted.
func TestSentinelMasterKilledTwoReplicas(t *testing.T) {
	t.Parallel()
	r := runFailover(t, true, 2, func(ctx context.Context, r *haRun) string {
		old, err := r.s.KillMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return old
	})
	assertUnready(t, r)
}

// A failover client refuses to start when no sentinel answers, with a line
// that says where it looked.
func TestSentinelUnreachable(t *testing.T) {
	t.Parallel()
	cfg, err := redisconn.Parse("redis-sentinel://:pw@127.0.0.1:1/0?master=m", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Connect(context.Background(), 2*time.Second)
	if err == nil || !contains(err.Error(), "FACESYNC_REDIS_URL") || !contains(err.Error(), "127.0.0.1:1") || contains(err.Error(), ":pw@") {
		t.Fatalf("Connect(no sentinel) = %v, want a line naming FACESYNC_REDIS_URL and the sentinel, without the password", err)
	}
}
