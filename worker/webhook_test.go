package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/webhook"
	"github.com/facesync/facesync/worker/workertest"
)

const hookSecret = "whsec-worker-test-secret"

// delivery is one request the receiver got.
type delivery struct {
	ID, Event string
	Attempt   int   // of this delivery id, from 1
	T         int64 // the signature's t
	SigOK     bool  // the signature verified as a receiver would
	Status    int   // what the receiver answered
	Body      webhook.Body
}

// receiver is a partner's webhook endpoint on loopback: it verifies every
// request and answers failFirst failures for each delivery id, then 200
// (failFirst < 0: never accepts).
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []delivery
	// failFirst is how many attempts of each delivery id fail with 500.
	failFirst int
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	r := &receiver{failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{ID: req.Header.Get(webhook.HeaderDelivery), Event: req.Header.Get(webhook.HeaderEvent)}
		sig := req.Header.Get(webhook.HeaderSignature)
		d.SigOK = req.Header.Get("Content-Type") == "application/json" &&
			webhook.Verify(hookSecret, sig, body, time.Now(), webhook.Tolerance) == nil
		if ts, _, ok := strings.Cut(strings.TrimPrefix(sig, "t="), ","); ok {
			d.T, _ = strconv.ParseInt(ts, 10, 64)
		}
		if err := json.Unmarshal(body, &d.Body); err != nil {
			d.SigOK = false
		}
		r.mu.Lock()
		for _, p := range r.log {
			if p.ID == d.ID {
				d.Attempt = max(d.Attempt, p.Attempt)
			}
		}
		d.Attempt++
		d.Status = http.StatusOK
		if r.failFirst < 0 || d.Attempt <= r.failFirst {
			d.Status = http.StatusInternalServerError
			if r.failFirst < 0 {
				d.Status = http.StatusServiceUnavailable
			}
		}
		r.log = append(r.log, d)
		r.mu.Unlock()
		w.WriteHeader(d.Status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.log...)
}

func (r *receiver) accept() {
	r.mu.Lock()
	r.failFirst = 0
	r.mu.Unlock()
}

// logDeliveries prints the delivery log: the "Show".
func logDeliveries(t *testing.T, r *receiver) {
	t.Helper()
	for _, d := range r.deliveries() {
		t.Logf("delivery id=%s event=%s attempt=%d t=%d signature_valid=%v answered=%d record.evidence.status=%s",
			d.ID, d.Event, d.Attempt, d.T, d.SigOK, d.Status, evidenceStatus(d.Body.Record))
	}
}

func evidenceStatus(raw json.RawMessage) string {
	var rec orderstore.Record
	if json.Unmarshal(raw, &rec) != nil {
		return "?"
	}
	return rec.Evidence.Status
}

// hookEnv is a full stack whose app posts its webhooks to r, retrying
// every second, giving up after wait.
func hookEnv(t *testing.T, r *receiver, wait time.Duration) *workertest.Env {
	return hookEnvOpts(t, r, wait, workertest.Options{})
}

// hookEnvOpts is hookEnv with further options.
func hookEnvOpts(t *testing.T, r *receiver, wait time.Duration, o workertest.Options) *workertest.Env {
	o.Config.Webhooks = webhook.Config{
		Endpoints: []webhook.Endpoint{{AppID: appID, URL: r.srv.URL + "/hooks/facesync", Secret: hookSecret}},
		Wait:      wait, RetryBase: time.Second, RetryCap: time.Second,
	}
	return workertest.New(t, o)
}

func TestWebhooksDeliveredAfterFailures(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 2)
	b := hookEnv(t, r, time.Hour)
	b.Enqueue(t, "ord-hook", "")
	final := b.WaitFinal(t, "ord-hook", wait)
	for _, ev := range []string{tasks.EventDecision, tasks.EventEvidence} {
		b.WaitTask(t, tasks.QueueWebhook, tasks.WebhookID(appID, "ord-hook", ev), asynq.TaskStateCompleted, wait)
	}
	logDeliveries(t, r)

	accepted := map[string]delivery{}
	lastT := map[string]int64{}
	for _, d := range r.deliveries() {
		if !d.SigOK {
			t.Errorf("delivery %s attempt %d: signature or body refused", d.ID, d.Attempt)
		}
		if d.Body.ID != d.ID || d.Body.Event != d.Event || d.ID != tasks.WebhookID(appID, "ord-hook", d.Event) {
			t.Errorf("delivery header id %q event %q, body id %q event %q", d.ID, d.Event, d.Body.ID, d.Body.Event)
		}
		if d.T <= lastT[d.ID] {
			t.Errorf("delivery %s attempt %d signed at t=%d, not after the attempt before it (%d): t is per attempt", d.ID, d.Attempt, d.T, lastT[d.ID])
		}
		lastT[d.ID] = d.T
		if d.Status == http.StatusOK {
			if _, dup := accepted[d.ID]; dup {
				t.Errorf("delivery %s accepted twice", d.ID)
			}
			accepted[d.ID] = d
		}
	}
	if len(accepted) != 2 || len(r.deliveries()) != 6 {
		t.Fatalf("accepted %d deliveries in %d requests, want 2 (decision, evidence) after 2 failures each", len(accepted), len(r.deliveries()))
	}
	dec, evi := accepted[tasks.WebhookID(appID, "ord-hook", tasks.EventDecision)], accepted[tasks.WebhookID(appID, "ord-hook", tasks.EventEvidence)]
	if dec.Attempt != 3 || evi.Attempt != 3 {
		t.Errorf("accepted at attempts %d and %d, want 3 and 3", dec.Attempt, evi.Attempt)
	}
	// Each carries the record as it stood at its event.
	if s := evidenceStatus(dec.Body.Record); s != orderstore.EvidencePending {
		t.Errorf("decision event's record has evidence %q, want pending", s)
	}
	var rec orderstore.Record
	if err := json.Unmarshal(evi.Body.Record, &rec); err != nil || rec.Evidence.Status != orderstore.EvidenceStored || len(rec.Evidence.Files) != 2 || rec.Decision != final.Decision {
		t.Errorf("evidence event's record = %+v, %v, want the final record %+v", rec, err, final)
	}
	ev, err := b.Store.DueEvents(context.Background(), appID, "ord-hook")
	if err != nil || len(ev.Due) != 0 || len(ev.Delivered) != 2 {
		t.Errorf("events after delivery = %+v, %v, want both delivered", ev, err)
	}
	if n := b.DB.Client.ZCard(context.Background(), orderstore.EventsDueKey).Val(); n != 0 {
		t.Errorf("due set holds %d events, want 0", n)
	}
	// A duplicate order creates no second event.
	b.Enqueue(t, "ord-hook", "", asynq.TaskID("dup-ord-hook"))
	b.WaitTask(t, tasks.QueueResult, "dup-ord-hook", asynq.TaskStateCompleted, wait)
	if n, err := b.Worker.EnqueueDueEvents(context.Background(), time.Now()); err != nil || n != 0 {
		t.Errorf("EnqueueDueEvents after a duplicate = %d, %v, want 0", n, err)
	}
	if got := len(r.deliveries()); got != 6 {
		t.Errorf("receiver got %d requests after a duplicate order, want still 6", got)
	}
}

func TestWebhookArchivedAfterWaitThenRequeued(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, -1)
	b := hookEnv(t, r, 3*time.Second)
	b.Enqueue(t, "ord-never", tasks.GetFileNone)
	id := tasks.WebhookID(appID, "ord-never", tasks.EventDecision)
	info := b.WaitTask(t, tasks.QueueWebhook, id, asynq.TaskStateArchived, wait)
	logDeliveries(t, r)
	t.Logf("archived %s after %d retries: %s", id, info.Retried, info.LastErr)
	if !strings.Contains(info.LastErr, "HTTP 503") || !strings.Contains(info.LastErr, "not delivered within 3s") {
		t.Errorf("archived with %q, want the last error (HTTP 503) and the wait", info.LastErr)
	}
	if n := len(r.deliveries()); n < 2 {
		t.Errorf("receiver got %d attempts before the archive, want retries", n)
	}
	if _, err := b.Inspector.GetTaskInfo(tasks.QueueWebhook, tasks.WebhookID(appID, "ord-never", tasks.EventEvidence)); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("an order with evidence skipped has an evidence delivery: %v", err)
	}
	ev, _ := b.Store.DueEvents(context.Background(), appID, "ord-never")
	if ev.Due[tasks.EventDecision] == nil {
		t.Fatalf("events = %+v, want decision still due", ev)
	}

	// facesync requeue --webhooks: once the receiver is back, it is delivered.
	r.accept()
	before := len(r.deliveries())
	var ran []worker.WebhookRequeue
	n, err := worker.RequeueWebhooks(context.Background(), b.DB.Client, "", time.Now(), func(q worker.WebhookRequeue) { ran = append(ran, q) })
	if err != nil || n != 1 || len(ran) != 1 || !ran[0].Ran || ran[0].ID != id {
		t.Fatalf("RequeueWebhooks = %d, %v (%+v), want 1 run again", n, err, ran)
	}
	b.WaitTask(t, tasks.QueueWebhook, id, asynq.TaskStateCompleted, wait)
	got := r.deliveries()[before:]
	if len(got) != 1 || got[0].Status != http.StatusOK || !got[0].SigOK {
		t.Errorf("after requeue the receiver got %+v, want one valid delivery", got)
	}
	if n, err := worker.RequeueWebhooks(context.Background(), b.DB.Client, "", time.Now(), func(worker.WebhookRequeue) {}); err != nil || n != 0 {
		t.Errorf("RequeueWebhooks with nothing archived = %d, %v, want 0", n, err)
	}
}

// TestWebhookCrashBeforeEnqueue: a worker dies right after the store
// marked the decision event due, before it enqueued the delivery. The
// store write is made here directly, as the dead worker made it; the
// reconciler's sweep (EnqueueDueEvents) still delivers the event.
func TestWebhookCrashBeforeEnqueue(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 0)
	// Not started yet: the reconciler's own sweep (its first pass runs at
	// start) would race the check below.
	b := hookEnvOpts(t, r, time.Hour, workertest.Options{NoStart: true})
	ctx := context.Background()
	dead, err := orderstore.New(b.DB.Client, orderstore.Config{EventsFunc: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	rec := &orderstore.Record{
		Decision: orderstore.Decision{AppID: appID, OrderNo: "ord-crash", Status: orderstore.StatusPassed, Code: "0", DecidedAt: time.Now().UTC().Format(time.RFC3339)},
		Evidence: orderstore.Evidence{Status: orderstore.EvidenceSkipped, Files: []storage.File{}},
	}
	d, err := dead.Decide(ctx, rec, tasks.GetFileNone)
	if err != nil || !d.Created {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	id := tasks.WebhookID(appID, "ord-crash", tasks.EventDecision)
	if _, err := b.Inspector.GetTaskInfo(tasks.QueueWebhook, id); !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatalf("delivery task before the sweep: %v, want none", err)
	}
	n, err := b.Worker.EnqueueDueEvents(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("EnqueueDueEvents = %d, %v, want 1", n, err)
	}
	if err := b.Worker.Start(); err != nil {
		t.Fatal(err)
	}
	b.WaitTask(t, tasks.QueueWebhook, id, asynq.TaskStateCompleted, wait)
	logDeliveries(t, r)
	got := r.deliveries()
	if len(got) != 1 || got[0].ID != id || !got[0].SigOK || got[0].Status != http.StatusOK || string(got[0].Body.Record) != string(d.Raw) {
		t.Fatalf("receiver got %+v, want the decision event carrying %s", got, d.Raw)
	}
	t.Logf("delivered after the crash: %s %s", got[0].ID, got[0].Body.Record)
	if n, err := b.Worker.EnqueueDueEvents(ctx, time.Now()); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v, want 0: a delivered event is never enqueued again", n, err)
	}
	// A member whose order's state is gone (expired, purged) is dropped,
	// so the due set stays bounded.
	b.DB.Client.ZAdd(ctx, orderstore.EventsDueKey, redis.Z{Score: 1, Member: tasks.WebhookID(appID, "ord-gone", tasks.EventDecision)})
	if n, err := b.Worker.EnqueueDueEvents(ctx, time.Now()); err != nil || n != 0 {
		t.Errorf("sweep of a gone order = %d, %v, want 0", n, err)
	}
	if n := b.DB.Client.ZCard(ctx, orderstore.EventsDueKey).Val(); n != 0 {
		t.Errorf("due set holds %d members after the sweep, want 0", n)
	}
}

func TestWebhookConfigRefused(t *testing.T) {
	t.Parallel()
	var ce *worker.ConfigError
	c := worker.Config{Webhooks: webhook.Config{Endpoints: []webhook.Endpoint{{AppID: appID, URL: "http://partner.example/h", Secret: hookSecret}}}}
	if err := c.Validate(); !errors.As(err, &ce) || ce.Field != "Webhooks.Endpoints" || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Validate(http:// on a partner host) = %v, want a ConfigError of Webhooks.Endpoints", err)
	}
	c.Webhooks.Insecure = true
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(http://, insecure) = %v", err)
	}
}

// TestWebhookOfPurgedOrder: once an order's purge marker is set, its due
// event is not sent (the purge deletes the state after the marker), and the
// delivery task is archived saying the order was purged.
func TestWebhookOfPurgedOrder(t *testing.T) {
	t.Parallel()
	r := newReceiver(t, 0)
	b := hookEnvOpts(t, r, time.Hour, workertest.Options{NoStart: true})
	ctx := context.Background()
	rec := &orderstore.Record{
		Decision: orderstore.Decision{AppID: appID, OrderNo: "ord-purging", Status: orderstore.StatusPassed, Code: "0", DecidedAt: time.Now().UTC().Format(time.RFC3339)},
		Evidence: orderstore.Evidence{Status: orderstore.EvidenceSkipped, Files: []storage.File{}},
	}
	store, err := orderstore.New(b.DB.Client, orderstore.Config{EventsFunc: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := store.Decide(ctx, rec, tasks.GetFileNone); err != nil || !d.Created {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	if ev, err := store.DueEvents(ctx, appID, "ord-purging"); err != nil || len(ev.Due) != 1 {
		t.Fatalf("DueEvents = %+v, %v, want the decision event due", ev, err)
	}
	if err := store.MarkPurged(ctx, appID, "ord-purging", time.Now()); err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewDeliverWebhookTask(tasks.DeliverWebhook{AppID: appID, OrderNo: "ord-purging", Event: tasks.EventDecision, Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Worker.HandleDeliverWebhook(ctx, task)
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "ord-purging was purged: nothing") {
		t.Errorf("delivery of a purged order: error %v, want SkipRetry saying it was purged", err)
	}
	if got := r.deliveries(); len(got) != 0 {
		t.Errorf("receiver got %d deliveries for a purged order", len(got))
	}
}
