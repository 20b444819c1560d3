package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/queuemetrics"
)

// TestAsynqmon runs the asynqmon docker-compose.yml ships (v0.7.2, built
// against asynq v0.24.1) on tasks that asynq v0.26 wrote into facesync's
// queues, and checks what its queue API answers: the counts and tasks of
// every queue, as facesync's own queue metrics read them. Then it checks
// the one way it is known to fail, which the README states: once a listed
// task's key is gone, every queue page answers 500.
//
// testdata/asynqmon is a module of its own that serves asynqmon's handler
// on loopback; the Go module proxy is all the build needs.
func TestAsynqmon(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	opt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	populate(t, opt)

	base := startAsynqmon(t, db.URL())
	var got struct {
		Queues []struct {
			Queue                                             string
			Size, Pending, Active, Scheduled, Retry, Archived int
			Completed                                         int
			LatencyMsec                                       int64 `json:"latency_msec"`
		}
	}
	if code, body := get(t, base+"/api/queues", &got); code != http.StatusOK {
		t.Fatalf("GET /api/queues = %d: %s", code, body)
	}
	stats, err := queuemetrics.New(db.Client, queuemetrics.Options{}).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, q := range got.Queues {
		s, ok := stats[q.Queue]
		if !ok {
			t.Errorf("asynqmon lists queue %q, which is not facesync's", q.Queue)
			continue
		}
		seen[q.Queue] = true
		mon := queuemetrics.Stats{Pending: int64(q.Pending), Scheduled: int64(q.Scheduled), Retry: int64(q.Retry),
			Active: int64(q.Active), Archived: int64(q.Archived)}
		s.OldestPending = 0
		if mon != s {
			t.Errorf("asynqmon: queue %s has %+v, facesync_queue_tasks say %+v", q.Queue, mon, s)
		}
		t.Logf("asynqmon /api/queues: %s size %d pending %d scheduled %d retry %d archived %d completed %d latency %d ms",
			q.Queue, q.Size, q.Pending, q.Scheduled, q.Retry, q.Archived, q.Completed, q.LatencyMsec)
	}
	for _, q := range queuemetrics.Queues {
		if !seen[q] {
			t.Errorf("asynqmon /api/queues lacks queue %s", q)
		}
	}
	for _, q := range got.Queues {
		if q.Queue == queuemetrics.QueueWebhook && q.Completed != 1 {
			t.Errorf("asynqmon: queue %s has %d completed tasks, want 1", q.Queue, q.Completed)
		}
	}

	// The tasks themselves, written by asynq v0.26 (with a header, which
	// asynq v0.24.1 does not know), decode in asynqmon.
	var pending struct {
		Tasks []struct{ ID, Type, Payload, Queue string }
	}
	if code, body := get(t, base+"/api/queues/facesync/pending_tasks", &pending); code != http.StatusOK {
		t.Fatalf("GET /api/queues/facesync/pending_tasks = %d: %s", code, body)
	}
	ids := map[string]bool{}
	for _, ti := range pending.Tasks {
		ids[ti.ID] = ti.Type == tasks.TypeFetchResult && strings.Contains(ti.Payload, `"app_id":"TIDAMON"`)
	}
	for _, o := range []string{"o1", "o2", "o3", "o4"} {
		if !ids[tasks.TaskID("TIDAMON", o)] {
			t.Errorf("asynqmon pending tasks of facesync = %+v, want %s as a %s with its payload", pending.Tasks, tasks.TaskID("TIDAMON", o), tasks.TypeFetchResult)
		}
	}
	if code, body := get(t, base+"/", nil); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Errorf("GET / = %d, want asynqmon's page", code)
	}

	// A listed task whose key is gone (evicted, deleted by hand): asynq's
	// memory sampling script fails, and with it every queue page.
	var victim string
	for id := range ids {
		victim = id
		break
	}
	if err := db.Client.Del(t.Context(), "asynq:{facesync}:t:"+victim).Err(); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, base+"/api/queues", nil)
	if code != http.StatusInternalServerError || !strings.Contains(body, "arithmetic") {
		t.Errorf("GET /api/queues with a listed key gone = %d %q, want 500 from asynq's memory script (if asynqmon handles it now, update the README)", code, body)
	}
	t.Logf("asynqmon /api/queues with one listed key gone: %d %s", code, strings.TrimSpace(body))
	if _, err := queuemetrics.New(db.Client, queuemetrics.Options{}).Read(t.Context()); err != nil {
		t.Errorf("queuemetrics Read with a listed key gone: %v", err)
	}
}

// populate writes, with asynq v0.26, tasks in every state but active into
// facesync's queues: pending decisions, scheduled evidence, and on the
// webhook queue one retry, one archived and one completed task.
func populate(t *testing.T, opt asynq.RedisClientOpt) {
	t.Helper()
	client := asynq.NewClient(opt)
	defer client.Close()
	ctx := t.Context()
	for _, o := range []string{"o1", "o2", "o3"} {
		if _, err := tasks.Enqueue(ctx, client, tasks.FetchResult{AppID: "TIDAMON", OrderNo: o},
			asynq.Queue(tasks.QueueResult)); err != nil {
			t.Fatal(err)
		}
	}
	// A v0.26 task with headers (W3C trace context rides in them).
	hdr := asynq.NewTaskWithHeaders(tasks.TypeFetchResult, []byte(`{"app_id":"TIDAMON","order_no":"o4"}`),
		map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	if _, err := client.Enqueue(hdr, asynq.Queue(tasks.QueueResult), asynq.TaskID("TIDAMON:o4")); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"o1", "o2"} {
		if _, err := tasks.EnqueueEvidence(ctx, client, tasks.FetchEvidence{AppID: "TIDAMON", OrderNo: o},
			time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency: 1, Queues: map[string]int{queuemetrics.QueueWebhook: 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:ok", func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc("test:fail", func(context.Context, *asynq.Task) error { return context.DeadlineExceeded })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	for _, typ := range []string{"test:ok", "test:fail", "test:archive"} {
		if _, err := client.Enqueue(asynq.NewTask(typ, nil), asynq.Queue(queuemetrics.QueueWebhook),
			asynq.Retention(time.Hour), asynq.ProcessIn(map[string]time.Duration{"test:archive": time.Hour}[typ])); err != nil {
			t.Fatal(err)
		}
	}
	in := asynq.NewInspector(opt)
	defer in.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		qi, err := in.GetQueueInfo(queuemetrics.QueueWebhook)
		if err == nil && qi.Completed == 1 && qi.Retry == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook queue never got its completed and retry task: %+v, %v", qi, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	scheduled, err := in.ListScheduledTasks(queuemetrics.QueueWebhook)
	if err != nil || len(scheduled) != 1 {
		t.Fatalf("scheduled webhook tasks = %v, %v, want one", scheduled, err)
	}
	if err := in.ArchiveTask(queuemetrics.QueueWebhook, scheduled[0].ID); err != nil {
		t.Fatal(err)
	}
}

// startAsynqmon builds testdata/asynqmon and runs it against redisURL on a
// loopback port; it is killed when the test ends.
func startAsynqmon(t *testing.T, redisURL string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "asynqmon")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("testdata", "asynqmon")
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build asynqmon v0.7.2 (needs the Go module proxy): %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--redis-url", redisURL)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-line:
		if !ok || addr == "" {
			t.Fatal("asynqmon exited without saying where it listens")
		}
		return "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatal("asynqmon did not start within 30 s")
	}
	return ""
}

// get fetches url and, on 200, decodes its JSON into v (when not nil).
func get(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", url, b, err)
		}
	}
	return resp.StatusCode, string(b)
}
