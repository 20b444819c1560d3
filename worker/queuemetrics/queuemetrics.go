// Package queuemetrics exports the depth and age of facesync's asynq queues
// as Prometheus series (facesync_queue_tasks, facesync_queue_oldest_pending_seconds),
// read straight from asynq's Redis keys.
//
// Why not asynq's Inspector (or asynq/x/metrics, which calls it): its
// GetQueueInfo also estimates memory with a Lua script that runs MEMORY
// USAGE on sampled task keys and adds the answers up. When a listed task's
// key is gone (evicted under an allkeys-* maxmemory policy, deleted by hand
// or by a tool, lost in a failover) MEMORY USAGE answers nil and the whole
// script fails, and so does every read of every queue until the listing is
// repaired (asynq issues 901 and 1146; fixed on asynq's master by PR 1092,
// in no release yet; on managed Redis that refuses MEMORY in scripts it
// always fails, issue 728). A failed read leaves dashboards, alerts and the
// autoscaler without data. It also costs three round trips per queue.
//
// What this package does instead, per scrape, in one pipelined round trip:
// LLEN or ZCARD of the five state keys of every queue (a missing key counts
// 0, so a queue never used reads as empty), and for every queue one small
// read-only script that takes the pending_since of the oldest pending task.
// The script reads only the queue's own hash slot ({qname}), tolerates a
// task key that is gone (asynq's janitor deletes retained completed tasks
// while we read, and a key may be evicted), and skips tasks that carry no
// pending_since (asynq deletes it when a task becomes active and does not
// set it again when a shutting-down server pushes the task back), so no
// key's expiry or deletion can make it fail. Lua rather than SORT ... GET
// (which could do it too): asynq itself cannot run without EVAL, whereas
// SORT with external keys needs full key-read ACL rights and is refused in
// Redis Cluster.
//
// The key layout is asynq v0.26's (internal/base: asynq:{qname}:pending is
// a list, scheduled, retry and archived are sorted sets, active a list; a
// task is the hash asynq:{qname}:t:{id}). The package's tests enqueue real
// tasks with asynq into every state and compare with asynq's Inspector, so
// an asynq upgrade that moves a key fails them.
package queuemetrics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/tasks"
)

// QueueWebhook is the queue of webhook deliveries (faceid:deliver_webhook).
const QueueWebhook = tasks.QueueWebhook

// Queues are facesync's queues; every scrape reports all of them, used or
// not, so a query never meets a missing series.
var Queues = []string{tasks.QueueResult, tasks.QueueEvidence, QueueWebhook}

// States are the task states reported, as the value of label "state".
var States = []string{"pending", "scheduled", "retry", "active", "archived"}

// DefaultTimeout bounds one read, so a scrape of an unreachable Redis ends
// well within Prometheus's default scrape timeout of 10 s.
const DefaultTimeout = 3 * time.Second

// oldestScan is how many tasks from the tail of a pending list the script
// looks at for one that has a pending_since: more than a few pods' worth of
// tasks pushed back at shutdown, few enough to stay cheap.
const oldestScan = 256

// Options configure a Collector. The zero value is usable.
type Options struct {
	// Queues to report; nil means Queues.
	Queues []string
	// Now tells the time the oldest pending age is measured against; nil
	// means time.Now.
	Now func() time.Time
	// Timeout bounds one read; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Stats are one queue's task counts by state and the age of its oldest
// pending task (0 when none is pending).
type Stats struct {
	Pending, Scheduled, Retry, Active, Archived int64
	OldestPending                               time.Duration
}

// count returns the count of the named state.
func (s Stats) count(state string) int64 {
	switch state {
	case "pending":
		return s.Pending
	case "scheduled":
		return s.Scheduled
	case "retry":
		return s.Retry
	case "active":
		return s.Active
	case "archived":
		return s.Archived
	}
	return 0
}

// Collector is a prometheus.Collector of facesync's queue series. It is
// safe for concurrent scrapes.
type Collector struct {
	rdb     redis.UniversalClient
	queues  []string
	now     func() time.Time
	timeout time.Duration

	tasksDesc  *prometheus.Desc
	oldestDesc *prometheus.Desc
	readErrors prometheus.Counter
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector reading asynq's keys through rdb, the client of
// the database asynq uses.
func New(rdb redis.UniversalClient, opts Options) *Collector {
	c := &Collector{rdb: rdb, queues: opts.Queues, now: opts.Now, timeout: opts.Timeout}
	if c.queues == nil {
		c.queues = Queues
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.tasksDesc = prometheus.NewDesc("facesync_queue_tasks",
		"Tasks of each facesync queue in each state (pending, scheduled, retry, active, archived).",
		[]string{"queue", "state"}, nil)
	c.oldestDesc = prometheus.NewDesc("facesync_queue_oldest_pending_seconds",
		"Age of the oldest pending task of each facesync queue, 0 when none is pending.",
		[]string{"queue"}, nil)
	c.readErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "facesync_queue_read_errors_total",
		Help: "Scrapes whose read of the queue keys failed (Redis unreachable); such a scrape has no facesync_queue_* series.",
	})
	return c
}

// Describe sends the descriptors of every series the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasksDesc
	ch <- c.oldestDesc
	c.readErrors.Describe(ch)
}

// Collect reads the queues once and sends one series per queue and state
// plus one age per queue. When Redis cannot be read it sends none of them
// (zeros would tell an autoscaler the queues are empty) and counts the
// failure in facesync_queue_read_errors_total.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	stats, err := c.Read(ctx)
	if err != nil {
		c.readErrors.Inc()
	} else {
		for _, q := range c.queues {
			s := stats[q]
			for _, state := range States {
				ch <- prometheus.MustNewConstMetric(c.tasksDesc, prometheus.GaugeValue, float64(s.count(state)), q, state)
			}
			ch <- prometheus.MustNewConstMetric(c.oldestDesc, prometheus.GaugeValue, s.OldestPending.Seconds(), q)
		}
	}
	c.readErrors.Collect(ch)
}

// Key names of asynq v0.26 (internal/base).
func queuePrefix(qname string) string { return "asynq:{" + qname + "}:" }
func taskPrefix(qname string) string  { return queuePrefix(qname) + "t:" }

// oldestPendingScript returns the pending_since (Unix nanoseconds, as asynq
// writes it) of the oldest pending task that has one, or 0.
//
// KEYS[1] -> asynq:{<qname>}:pending (asynq LPUSHes new tasks and pops from
//
//	the right, so the tail is the oldest)
//
// ARGV[1] -> asynq:{<qname>}:t: (task key prefix)
// ARGV[2] -> how many tasks from the tail to look at
// Output: pending_since as a string, or the integer 0
var oldestPendingScript = redis.NewScript(`
local ids = redis.call("LRANGE", KEYS[1], -tonumber(ARGV[2]), -1)
for i = #ids, 1, -1 do
	local since = redis.call("HGET", ARGV[1] .. ids[i], "pending_since")
	if since then
		return since
	end
end
return 0`)

// Read returns the stats of every configured queue, read in one pipelined
// round trip (two, once, after Redis lost its script cache).
func (c *Collector) Read(ctx context.Context) (map[string]Stats, error) {
	stats, err := c.read(ctx, false)
	if err != nil && isNoScript(err) {
		stats, err = c.read(ctx, true)
	}
	return stats, err
}

type queueCmds struct {
	pending, active            *redis.IntCmd
	scheduled, retry, archived *redis.IntCmd
	oldest                     *redis.Cmd
}

func (c *Collector) read(ctx context.Context, load bool) (map[string]Stats, error) {
	now := c.now()
	pipe := c.rdb.Pipeline()
	cmds := make([]queueCmds, len(c.queues))
	for i, q := range c.queues {
		p := queuePrefix(q)
		cmds[i] = queueCmds{
			pending:   pipe.LLen(ctx, p+"pending"),
			active:    pipe.LLen(ctx, p+"active"),
			scheduled: pipe.ZCard(ctx, p+"scheduled"),
			retry:     pipe.ZCard(ctx, p+"retry"),
			archived:  pipe.ZCard(ctx, p+"archived"),
		}
		keys, args := []string{p + "pending"}, []any{taskPrefix(q), oldestScan}
		if load {
			// EVAL loads the script again for the EVALSHA of later scrapes.
			cmds[i].oldest = oldestPendingScript.Eval(ctx, pipe, keys, args...)
		} else {
			cmds[i].oldest = oldestPendingScript.EvalSha(ctx, pipe, keys, args...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read asynq queue keys: %w", err)
	}
	out := make(map[string]Stats, len(c.queues))
	for i, q := range c.queues {
		s := Stats{
			Pending: cmds[i].pending.Val(), Active: cmds[i].active.Val(),
			Scheduled: cmds[i].scheduled.Val(), Retry: cmds[i].retry.Val(), Archived: cmds[i].archived.Val(),
		}
		since, err := unixNanos(cmds[i].oldest.Val())
		if err != nil {
			return nil, fmt.Errorf("oldest pending task of queue %s: %w", q, err)
		}
		if since > 0 && s.Pending > 0 {
			// The enqueuer's clock wrote pending_since; a clock behind ours
			// must not make an age negative.
			s.OldestPending = max(now.Sub(time.Unix(0, since)), 0)
		}
		out[q] = s
	}
	return out, nil
}

// unixNanos reads the script's answer: pending_since as asynq stores it (a
// decimal string) or 0.
func unixNanos(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pending_since %q is not Unix nanoseconds", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("unexpected answer %T from the oldest-pending script", v)
}

func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }
