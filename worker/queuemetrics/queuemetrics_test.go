package queuemetrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/queuemetrics"
)

// TestMatchesInspector is the guard against an asynq upgrade that moves a
// key: tasks in every state, put there by asynq itself, must read the same
// here as through asynq's own Inspector, and the keys must be where this
// package looks.
func TestMatchesInspector(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0, time.Hour)
	f.populate(t, time.Hour)

	before := time.Now()
	infos := map[string]*asynq.QueueInfo{}
	for _, q := range queuemetrics.Queues {
		qi, err := f.inspector.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("Inspector.GetQueueInfo(%q): %v", q, err)
		}
		infos[q] = qi
	}
	after := time.Now()
	c := queuemetrics.New(f.db.Client, queuemetrics.Options{Now: func() time.Time { return after }})
	got, err := c.Read(t.Context())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	for i, q := range queuemetrics.Queues {
		qi, s, w := infos[q], got[q], want(i)
		inspected := queuemetrics.Stats{Pending: int64(qi.Pending), Scheduled: int64(qi.Scheduled),
			Retry: int64(qi.Retry), Active: int64(qi.Active), Archived: int64(qi.Archived)}
		counts := s
		counts.OldestPending = 0
		if counts != inspected || counts != w {
			t.Errorf("Read()[%q] = %+v, Inspector says %+v, fixture made %+v", q, counts, inspected, w)
		}
		// The Inspector measured its latency at some instant between
		// before and after; Read measured at after.
		if lo, hi := qi.Latency, qi.Latency+after.Sub(before); s.OldestPending < lo || s.OldestPending > hi || s.OldestPending <= 0 {
			t.Errorf("Read()[%q].OldestPending = %v, want within [%v, %v] (Inspector's latency %v)", q, s.OldestPending, lo, hi, qi.Latency)
		}
	}

	// The key names themselves, as asynq v0.26 writes them: a changed
	// name reads as 0 above, but say which one moved.
	for _, q := range queuemetrics.Queues {
		for _, state := range queuemetrics.States {
			key := "asynq:{" + q + "}:" + state
			if n, err := f.db.Client.Exists(t.Context(), key).Result(); err != nil || n != 1 {
				t.Errorf("EXISTS %s = %d, %v: asynq no longer keeps %s tasks there", key, n, err, state)
			}
		}
		ids, err := f.inspector.ListPendingTasks(q, asynq.PageSize(1000))
		if err != nil {
			t.Fatalf("ListPendingTasks(%q): %v", q, err)
		}
		for _, ti := range ids {
			key := "asynq:{" + q + "}:t:" + ti.ID
			if since, err := f.db.Client.HGet(t.Context(), key, "pending_since").Result(); err != nil || since == "" {
				t.Errorf("HGET %s pending_since = %q, %v: asynq no longer stamps pending tasks there", key, since, err)
			}
		}
	}
}

// TestWhileRetainedTasksExpire scrapes over HTTP, as Prometheus does,
// while retained completed tasks expire in every queue (asynq's janitor
// deletes them as we read), and then with task keys gone that are still
// listed (as after an eviction): every scrape must carry every series with
// the right values.
func TestWhileRetainedTasksExpire(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, 100*time.Millisecond)
	// Long enough that the first expires only after the fixture is built
	// on a busy machine, spread so that scrapes run between expiries.
	retain := []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second, 6 * time.Second, time.Hour}
	f.populate(t, retain...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(queuemetrics.New(f.db.Client, queuemetrics.Options{}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	// retained counts the completed tasks still kept, in all queues.
	retained := func() int64 {
		var n int64
		for _, q := range queuemetrics.Queues {
			c, err := f.db.Client.ZCard(t.Context(), "asynq:{"+q+"}:completed").Result()
			if err != nil {
				t.Fatal(err)
			}
			n += c
		}
		return n
	}
	all := int64(len(retain) * len(queuemetrics.Queues))
	kept := int64(len(queuemetrics.Queues)) // the ones retained for an hour
	var scrapes, during, inspectorExpiryFailures int
	var excerpt string
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := retained()
		body := scrape(t, srv.URL)
		scrapes++
		checkScrape(t, body)
		if n < all && n > kept {
			during++
			if excerpt == "" {
				excerpt = body
			}
			// For the record: asynq v0.26's janitor deletes a task's key
			// and listing together, so the Inspector survives this part.
			if f.queueInfo(queuemetrics.Queues[during%len(queuemetrics.Queues)]) == nil {
				inspectorExpiryFailures++
			}
		}
		if n == kept && retained() == kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d scrapes %d retained tasks are left, want %d", scrapes, n, kept)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if during == 0 {
		t.Fatalf("no scrape ran while some retained tasks had expired and others had not: the test saw no expiry")
	}
	t.Logf("%d scrapes, %d of them while retained tasks expired; Inspector.GetQueueInfo failed %d of %d times then", scrapes, during, inspectorExpiryFailures, during)
	t.Logf("a scrape while retained tasks expired:\n%s", queueLines(excerpt))

	// Keys gone while their tasks are still listed: the completed task
	// kept for an hour and one archived task of every queue.
	for _, q := range queuemetrics.Queues {
		ids, err := f.db.Client.ZRange(t.Context(), "asynq:{"+q+"}:completed", 0, 0).Result()
		if err != nil || len(ids) != 1 {
			t.Fatalf("completed tasks of %s = %q, %v, want one", q, ids, err)
		}
		arch, err := f.db.Client.ZRange(t.Context(), "asynq:{"+q+"}:archived", 0, 0).Result()
		if err != nil || len(arch) != 1 {
			t.Fatalf("archived tasks of %s = %q, %v, want at least one", q, arch, err)
		}
		if err := f.db.Client.Del(t.Context(), "asynq:{"+q+"}:t:"+ids[0], "asynq:{"+q+"}:t:"+arch[0]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	inspectorFailures := 0
	for k := 0; k < 3; k++ {
		checkScrape(t, scrape(t, srv.URL))
		for _, q := range queuemetrics.Queues {
			if _, err := f.inspector.GetQueueInfo(q); err != nil {
				inspectorFailures++
				if k == 0 {
					t.Logf("Inspector.GetQueueInfo(%q) with a listed key gone: %v", q, err)
				}
			}
		}
	}
	t.Logf("with listed keys gone, every scrape complete; Inspector.GetQueueInfo failed %d of %d times", inspectorFailures, 3*len(queuemetrics.Queues))
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v:\n%s", resp.StatusCode, err, b)
	}
	return string(b)
}

// checkScrape checks one exposition against the fixture: every queue and
// state, exact counts, a positive age, no read error.
func checkScrape(t *testing.T, body string) {
	t.Helper()
	values := parse(body)
	for i, q := range queuemetrics.Queues {
		w := want(i)
		for _, st := range []struct {
			state string
			n     int64
		}{{"pending", w.Pending}, {"scheduled", w.Scheduled}, {"retry", w.Retry}, {"active", w.Active}, {"archived", w.Archived}} {
			name := fmt.Sprintf(`facesync_queue_tasks{queue=%q,state=%q}`, q, st.state)
			if v, ok := values[name]; !ok || v != float64(st.n) {
				t.Fatalf("scrape has %s = %v (present %v), want %d:\n%s", name, v, ok, st.n, body)
			}
		}
		name := fmt.Sprintf(`facesync_queue_oldest_pending_seconds{queue=%q}`, q)
		if v, ok := values[name]; !ok || v <= 0 {
			t.Fatalf("scrape has %s = %v (present %v), want > 0:\n%s", name, v, ok, body)
		}
	}
	if v := values["facesync_queue_read_errors_total"]; v != 0 {
		t.Fatalf("facesync_queue_read_errors_total = %v, want 0", v)
	}
}

// parse reads "name{labels} value" lines of the text exposition.
func parse(body string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func queueLines(body string) string {
	var b strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "facesync_queue_") || strings.HasPrefix(line, "# TYPE facesync_queue_") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestNeverUsed: an empty database still has every series, all 0.
func TestNeverUsed(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	var want strings.Builder
	want.WriteString("# HELP facesync_queue_oldest_pending_seconds Age of the oldest pending task of each facesync queue, 0 when none is pending.\n# TYPE facesync_queue_oldest_pending_seconds gauge\n")
	for _, q := range queuemetrics.Queues {
		fmt.Fprintf(&want, "facesync_queue_oldest_pending_seconds{queue=%q} 0\n", q)
	}
	want.WriteString("# HELP facesync_queue_read_errors_total Scrapes whose read of the queue keys failed (Redis unreachable); such a scrape has no facesync_queue_* series.\n# TYPE facesync_queue_read_errors_total counter\nfacesync_queue_read_errors_total 0\n")
	want.WriteString("# HELP facesync_queue_tasks Tasks of each facesync queue in each state (pending, scheduled, retry, active, archived).\n# TYPE facesync_queue_tasks gauge\n")
	for _, q := range queuemetrics.Queues {
		for _, s := range []string{"active", "archived", "pending", "retry", "scheduled"} {
			fmt.Fprintf(&want, "facesync_queue_tasks{queue=%q,state=%q} 0\n", q, s)
		}
	}
	c := queuemetrics.New(db.Client, queuemetrics.Options{})
	if err := testutil.CollectAndCompare(c, strings.NewReader(want.String())); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "facesync_queue_tasks", "facesync_queue_oldest_pending_seconds"); n != 18 {
		t.Errorf("CollectAndCount = %d, want 18 (3 queues × 5 states + 3 ages)", n)
	}
}

// TestOldestPending: the age comes from the tail's pending_since, on the
// injected clock; a tail task without one (pushed back by a server that
// shut down) or without a key at all is skipped, not an error.
func TestOldestPending(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB})
	defer client.Close()
	const q = "facesync_evidence"
	var ids []string
	for k := 0; k < 3; k++ {
		ti, err := client.Enqueue(asynq.NewTask(typeIdle, nil), asynq.Queue(q))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ti.ID)
	}
	since := func(id string) time.Time {
		v, err := db.Client.HGet(t.Context(), "asynq:{"+q+"}:t:"+id, "pending_since").Int64()
		if err != nil {
			t.Fatalf("pending_since of %s: %v", id, err)
		}
		return time.Unix(0, v)
	}
	base := since(ids[2]).Add(90 * time.Second)
	now := base
	c := queuemetrics.New(db.Client, queuemetrics.Options{Now: func() time.Time { return now }})
	check := func(what string, want time.Duration) {
		t.Helper()
		got, err := c.Read(t.Context())
		if err != nil {
			t.Fatalf("%s: Read: %v", what, err)
		}
		if got[q].OldestPending != want || got[q].Pending != 3 {
			t.Errorf("%s: Read()[%q] = %+v, want 3 pending, oldest %v", what, q, got[q], want)
		}
	}
	check("three pending", base.Sub(since(ids[0])))
	hdel := db.Client.HDel(t.Context(), "asynq:{"+q+"}:t:"+ids[0], "pending_since")
	if hdel.Err() != nil {
		t.Fatal(hdel.Err())
	}
	check("oldest without pending_since", base.Sub(since(ids[1])))
	if err := db.Client.Del(t.Context(), "asynq:{"+q+"}:t:"+ids[1]).Err(); err != nil {
		t.Fatal(err)
	}
	check("next without a key", 90*time.Second)
	now = since(ids[2]).Add(-time.Second) // the enqueuer's clock ran ahead
	check("clock behind the enqueuer's", 0)
}

// TestOneRoundTrip counts what reaches Redis: one pipeline per read, and
// one more only on the read after Redis lost its scripts. It has a
// redis-server of its own: the script cache is the whole server's, and a
// test of another package on the shared one could load the script again
// between the flush and the read.
func TestOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	rt := &roundTrips{}
	rdb.AddHook(rt)
	c := queuemetrics.New(rdb, queuemetrics.Options{})
	ctx := t.Context()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rt.single.Store(0)
	for k, want := range []int64{2, 1, 1} {
		rt.pipelines.Store(0)
		if _, err := c.Read(ctx); err != nil {
			t.Fatalf("Read %d: %v", k, err)
		}
		if got := rt.pipelines.Load(); got != want || rt.single.Load() != 0 {
			t.Errorf("Read %d: %d pipelines and %d single commands, want %d and 0", k, got, rt.single.Load(), want)
		}
	}
}

// TestRedisDown: no queue series (zeros would read as empty queues), the
// failure counted, and the scrape bounded by the timeout.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rdb.Close()
	srv.Kill()
	c := queuemetrics.New(rdb, queuemetrics.Options{Timeout: 200 * time.Millisecond})
	if n := testutil.CollectAndCount(c, "facesync_queue_tasks", "facesync_queue_oldest_pending_seconds"); n != 0 {
		t.Errorf("CollectAndCount with Redis down = %d series, want 0", n)
	}
	// CollectAndCount scraped once, this scrapes again.
	const wantErrors = `# HELP facesync_queue_read_errors_total Scrapes whose read of the queue keys failed (Redis unreachable); such a scrape has no facesync_queue_* series.
# TYPE facesync_queue_read_errors_total counter
facesync_queue_read_errors_total 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantErrors), "facesync_queue_read_errors_total"); err != nil {
		t.Error(err)
	}
	if _, err := c.Read(context.Background()); err == nil {
		t.Errorf("Read with Redis down = nil error, want one")
	}
}

// BenchmarkRead measures one scrape's read against a populated database,
// beside what asynq's Inspector takes for the same three queues.
func BenchmarkRead(b *testing.B) {
	db := ticketcachetest.NewDB(b)
	opt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	client := asynq.NewClient(opt)
	defer client.Close()
	for _, q := range queuemetrics.Queues {
		for k := 0; k < 1000; k++ {
			if _, err := client.Enqueue(asynq.NewTask(typeIdle, nil), asynq.Queue(q)); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	b.Run("queuemetrics", func(b *testing.B) {
		c := queuemetrics.New(db.Client, queuemetrics.Options{})
		for b.Loop() {
			if _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Inspector.GetQueueInfo", func(b *testing.B) {
		in := asynq.NewInspector(opt)
		defer in.Close()
		for b.Loop() {
			for _, q := range queuemetrics.Queues {
				if _, err := in.GetQueueInfo(q); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
