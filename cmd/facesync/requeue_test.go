package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
)

// TestRequeue runs `facesync requeue` on a real archive: an order without
// a record, a pending order's evidence, a finished order, an invalid
// payload and another app's order.
func TestRequeue(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	st := &stack{db: db, env: map[string]string{"FACESYNC_REDIS_URL": db.URL()}}
	opt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	store, err := orderstore.New(db.Client, orderstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	archive := func(queue, id string) {
		t.Helper()
		if err := insp.ArchiveTask(queue, id); err != nil {
			t.Fatalf("ArchiveTask(%s): %v", id, err)
		}
	}
	for _, o := range []struct{ app, order string }{{testApp, "rq-1"}, {testApp, "rq-done"}, {"TIDA0002", "rq-other"}} {
		if _, err := tasks.Enqueue(ctx, client, tasks.FetchResult{AppID: o.app, OrderNo: o.order}, asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
		archive(tasks.QueueResult, tasks.TaskID(o.app, o.order))
	}
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(`{"order_no":"x"}`)), asynq.Queue(tasks.QueueResult), asynq.TaskID("bad")); err != nil {
		t.Fatal(err)
	}
	archive(tasks.QueueResult, "bad")
	for _, order := range []string{"rq-done", "rq-ev"} {
		rec := &orderstore.Record{
			Decision: orderstore.Decision{AppID: testApp, OrderNo: order, Status: orderstore.StatusPassed, Code: "0"},
			Evidence: orderstore.Evidence{Status: orderstore.EvidencePending, Files: []storage.File{}},
		}
		if _, err := store.Decide(ctx, rec, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tasks.EnqueueEvidence(ctx, client, tasks.FetchEvidence{AppID: testApp, OrderNo: "rq-ev", GetFile: "1", DecidedAt: time.Now()}, time.Now()); err != nil {
		t.Fatal(err)
	}
	archive(tasks.QueueEvidence, tasks.TaskID(testApp, "rq-ev"))

	code, out, errOut := st.run(t, "requeue", "--app-id", testApp, "--order-no", "rq-done")
	t.Logf("$ facesync requeue --app-id %s --order-no rq-done  (exit %d)\n%s%s", testApp, code, out, errOut)
	if code != exitNo || !strings.Contains(out, "left faceid:fetch_result "+testApp+":rq-done (queue facesync): the order has its decision record") {
		t.Errorf("requeue of a finished order = %d %q %q, want exit 1 saying why it was left", code, out, errOut)
	}

	code, out, errOut = st.run(t, "requeue", "--archived", "--app-id", testApp)
	t.Logf("$ facesync requeue --archived --app-id %s  (exit %d)\n%s%s", testApp, code, out, errOut)
	want := "requeued faceid:fetch_result " + testApp + ":rq-1 (queue facesync)\n" +
		"requeued faceid:fetch_evidence " + testApp + ":rq-ev (queue facesync_evidence)\n" +
		"2 tasks run again\n"
	if code != exitOK || out != want {
		t.Errorf("requeue --archived = %d\n%s%s\nwant exit 0\n%s", code, out, errOut, want)
	}
	for _, q := range []struct{ queue, id string }{{tasks.QueueResult, tasks.TaskID(testApp, "rq-1")}, {tasks.QueueEvidence, tasks.TaskID(testApp, "rq-ev")}} {
		info, err := insp.GetTaskInfo(q.queue, q.id)
		if err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 {
			t.Errorf("requeued %s = %+v (%v), want pending with a fresh budget", q.id, info, err)
		}
	}
	for _, id := range []string{"bad", tasks.TaskID(testApp, "rq-done"), tasks.TaskID("TIDA0002", "rq-other")} {
		if info, err := insp.GetTaskInfo(tasks.QueueResult, id); err != nil || info.State != asynq.TaskStateArchived {
			t.Errorf("task %s = %+v (%v), want still archived", id, info, err)
		}
	}
	if s, err := store.State(ctx, testApp, "rq-1"); err != nil || len(s.Revivals) != 0 {
		t.Errorf("revivals of rq-1 after an operator's requeue = %v (%v), want none counted", s.Revivals, err)
	}

	code, out, errOut = st.run(t, "requeue", "--archived")
	t.Logf("$ facesync requeue --archived  (exit %d)\n%s%s", code, out, errOut)
	if code != exitOK || !strings.Contains(out, "TIDA0002:rq-other") || !strings.Contains(out, "1 task run again") {
		t.Errorf("requeue --archived of every app = %d %q %q, want the other app's order run", code, out, errOut)
	}
	if code, out, errOut = st.run(t, "requeue", "--archived"); code != exitNo || !strings.Contains(errOut, "nothing to run again") {
		t.Errorf("requeue with nothing left = %d %q %q, want exit 1", code, out, errOut)
	}
	if code, _, errOut = st.run(t, "requeue", "--webhooks"); code != exitNo {
		t.Errorf("requeue --webhooks = %d %q, want exit 1", code, errOut)
	}
	if code, _, errOut = st.run(t, "requeue", "--archived", "--order-no", "x"); code != exitError {
		t.Errorf("requeue --archived --order-no = %d %q, want exit 2", code, errOut)
	}
}

func TestReconcileIntervalConfig(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"soon", "-5s", "500ms"} {
		_, err := LoadConfig(func(k string) string {
			if k == "FACESYNC_RECONCILE_INTERVAL" {
				return v
			}
			return ""
		})
		if err == nil || !strings.HasPrefix(err.Error(), "FACESYNC_RECONCILE_INTERVAL: ") {
			t.Errorf("FACESYNC_RECONCILE_INTERVAL=%s: error %v, want one naming the variable", v, err)
		}
	}
	c, err := LoadConfig(func(k string) string {
		if k == "FACESYNC_RECONCILE_INTERVAL" {
			return "5s"
		}
		return ""
	})
	if err != nil || c.workerConfig(nil).ReconcileInterval != 5*time.Second {
		t.Errorf("FACESYNC_RECONCILE_INTERVAL=5s: %+v, %v", c, err)
	}
	st := &stack{env: map[string]string{"FACESYNC_RECONCILE_INTERVAL": "soon", "FACESYNC_APPS": testApp + "=x", "FACESYNC_S3_BUCKET": "b"}}
	code, _, errOut := st.run(t, "worker")
	if code != exitError || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "FACESYNC_RECONCILE_INTERVAL") {
		t.Errorf("worker with a malformed interval = %d %q, want exit 2 and one line naming the variable", code, errOut)
	}
}
