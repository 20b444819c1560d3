package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
)

// TestFrozenNames guards the stored contract: queued tasks carry these
// strings, and partners in other languages hard-code them.
func TestFrozenNames(t *testing.T) {
	t.Parallel()
	frozen := map[string]string{
		tasks.TypeFetchResult:    "faceid:fetch_result",
		tasks.TypeFetchEvidence:  "faceid:fetch_evidence",
		tasks.QueueResult:        "facesync",
		tasks.QueueEvidence:      "facesync_evidence",
		tasks.TypeDeliverWebhook: "faceid:deliver_webhook",
		tasks.QueueWebhook:       "facesync_webhook",
		tasks.EventDecision:      "decision",
		tasks.EventEvidence:      "evidence",
	}
	for got, want := range frozen {
		if got != want {
			t.Errorf("name = %q, want %q", got, want)
		}
	}
	tags := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			out = append(out, rt.Field(i).Tag.Get("json"))
		}
		return out
	}
	if got, want := tags(tasks.FetchResult{}), []string{"app_id", "order_no", "get_file,omitempty"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FetchResult json tags = %v, want %v", got, want)
	}
	if got, want := tags(tasks.FetchEvidence{}), []string{"app_id", "order_no", "get_file", "decided_at", "not_before,omitzero"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FetchEvidence json tags = %v, want %v", got, want)
	}
	if got, want := tags(tasks.DeliverWebhook{}), []string{"app_id", "order_no", "event", "since,omitzero"}; !reflect.DeepEqual(got, want) {
		t.Errorf("DeliverWebhook json tags = %v, want %v", got, want)
	}
	if got := tasks.WebhookID("TIDA0001", "ord0001", tasks.EventEvidence); got != "TIDA0001:ord0001:evidence" {
		t.Errorf("WebhookID = %q, want %q", got, "TIDA0001:ord0001:evidence")
	}
	if got := tasks.TaskID("TIDA0001", "ord0001"); got != "TIDA0001:ord0001" {
		t.Errorf("TaskID = %q, want %q", got, "TIDA0001:ord0001")
	}
}

func TestParseFetchResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    tasks.FetchResult
		wantErr string
	}{
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":"1"}`, want: tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "1"}},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001"}`, want: tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "1"}},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":0}`, want: tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "0"}},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":3}`, want: tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "3"}},
		{in: `{"app_id":"a_b-C9","order_no":"` + strings.Repeat("x", 32) + `","get_file":null}`, want: tasks.FetchResult{AppID: "a_b-C9", OrderNo: strings.Repeat("x", 32), GetFile: "1"}},
		{in: `not json`, wantErr: "not a JSON object"},
		{in: `[]`, wantErr: "not a JSON object"},
		{in: `{"order_no":"ord0001"}`, wantErr: "app_id is missing"},
		{in: `{"app_id":"TIDA0001"}`, wantErr: "order_no is missing"},
		{in: `{"app_id":"TIDA0001","order_no":"` + strings.Repeat("x", 33) + `"}`, wantErr: "order_no is 33 bytes long"},
		{in: `{"app_id":"TIDA/../0001","order_no":"ord0001"}`, wantErr: `app_id "TIDA/../0001" is malformed`},
		{in: `{"app_id":"TIDA0001","order_no":"ord 1"}`, wantErr: `order_no "ord 1" is malformed`},
		{in: `{"app_id":"TIDA0001","order_no":"ord:1"}`, wantErr: `order_no "ord:1" is malformed`},
		{in: `{"app_id":"TIDA0001","order_no":"ordé"}`, wantErr: "malformed"},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":"4"}`, wantErr: `get_file "4" is malformed`},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":1.5}`, wantErr: `get_file "1.5" is malformed`},
		{in: `{"app_id":"TIDA0001","order_no":"ord0001","get_file":true}`, wantErr: "get_file must be a string or a number"},
		{in: `{"app_id":7,"order_no":"ord0001"}`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		got, err := tasks.ParseFetchResult([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Errorf("ParseFetchResult(%q) error = %v, want one containing %q wrapping ErrInvalidPayload", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFetchResult(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseFetchEvidenceRoundTrip(t *testing.T) {
	t.Parallel()
	in := tasks.FetchEvidence{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "2", DecidedAt: time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tasks.ParseFetchEvidence(b)
	if err != nil || !got.DecidedAt.Equal(in.DecidedAt) || got.GetFile != "2" {
		t.Fatalf("ParseFetchEvidence(%s) = %+v, %v, want %+v", b, got, err, in)
	}
	if _, err := tasks.ParseFetchEvidence([]byte(`{"app_id":"TIDA0001","order_no":"ord0001","get_file":"0"}`)); err == nil {
		t.Errorf("ParseFetchEvidence(get_file 0) = nil error, want one: no evidence was asked for")
	}
}

func TestNewFetchResultTaskRejectsBadIDs(t *testing.T) {
	t.Parallel()
	if _, err := tasks.NewFetchResultTask(tasks.FetchResult{AppID: "bad id", OrderNo: "o"}); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("NewFetchResultTask(bad id) error = %v, want ErrInvalidPayload", err)
	}
}

func TestEnqueueOnRealRedis(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB})
	defer client.Close()
	ctx := context.Background()
	p := tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord0001"}

	dup, err := tasks.Enqueue(ctx, client, p)
	if err != nil || dup {
		t.Fatalf("first Enqueue = %v, %v, want false, nil", dup, err)
	}
	dup, err = tasks.Enqueue(ctx, client, p)
	if err != nil || !dup {
		t.Fatalf("second Enqueue = %v, %v, want true, nil (already queued is success)", dup, err)
	}

	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB})
	defer insp.Close()
	info, err := insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:ord0001")
	if err != nil {
		t.Fatalf("GetTaskInfo: %v", err)
	}
	if info.Type != tasks.TypeFetchResult || info.Retention != tasks.DefaultRetention || info.MaxRetry != tasks.DefaultMaxRetry {
		t.Errorf("queued task = type %q retention %v max retry %d, want %q %v %d", info.Type, info.Retention, info.MaxRetry, tasks.TypeFetchResult, tasks.DefaultRetention, tasks.DefaultMaxRetry)
	}
	if string(info.Payload) != `{"app_id":"TIDA0001","order_no":"ord0001"}` {
		t.Errorf("payload = %s", info.Payload)
	}

	ev := tasks.FetchEvidence{AppID: "TIDA0001", OrderNo: "ord0001", GetFile: "1", DecidedAt: time.Now()}
	notBefore := time.Now().Add(1500 * time.Millisecond)
	for i, want := range []bool{false, true} {
		dup, err := tasks.EnqueueEvidence(ctx, client, ev, notBefore)
		if err != nil || dup != want {
			t.Fatalf("EnqueueEvidence #%d = %v, %v, want %v, nil", i, dup, err, want)
		}
	}
	einfo, err := insp.GetTaskInfo(tasks.QueueEvidence, "TIDA0001:ord0001")
	if err != nil {
		t.Fatalf("GetTaskInfo(evidence): %v", err)
	}
	// asynq keeps whole seconds: the task runs at the second at or before
	// notBefore, and the payload says when the call may go out.
	if want := notBefore.Truncate(time.Second); einfo.State != asynq.TaskStateScheduled || !einfo.NextProcessAt.Equal(want) {
		t.Errorf("evidence task state %v next at %v, want scheduled at %v (%v truncated to the second)", einfo.State, einfo.NextProcessAt, want, notBefore)
	}
	got, err := tasks.ParseFetchEvidence(einfo.Payload)
	if err != nil || !got.NotBefore.Equal(notBefore) {
		t.Errorf("evidence payload not_before = %v (%v), want %v", got.NotBefore, err, notBefore)
	}
}

// TestHeadersOption: a Go partner's trace context travels in the task's
// asynq headers; asynq itself ignores the option.
func TestHeadersOption(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	opt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	h := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if _, err := tasks.Enqueue(context.Background(), client, tasks.FetchResult{AppID: "TIDA0001", OrderNo: "ord-h"}, tasks.Headers(h), asynq.MaxRetry(3)); err != nil {
		t.Fatal(err)
	}
	h["traceparent"] = "changed after the call"
	info, err := insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:ord-h")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Headers["traceparent"]; got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || info.MaxRetry != 3 {
		t.Errorf("task headers %v, max retry %d; want the traceparent given and 3", info.Headers, info.MaxRetry)
	}
}

// TestEnqueueConflictEachState enqueues an order again while asynq holds
// its first task in each state a task ID stays taken in: every time the
// answer is "already there", and the first task is left as it was.
func TestEnqueueConflictEachState(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	opt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	ctx := context.Background()

	// A server whose handler fails "retry", holds "active" until the test
	// ends and completes "completed".
	release := make(chan struct{})
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency: 4, Queues: map[string]int{tasks.QueueResult: 1}, TaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		p, err := tasks.ParseFetchResult(task.Payload())
		if err != nil {
			return err
		}
		switch p.OrderNo {
		case "retry":
			return errors.New("provider down")
		case "active":
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	defer close(release)

	states := []struct {
		order string
		opts  []asynq.Option
		want  asynq.TaskState
	}{
		{"scheduled", []asynq.Option{asynq.ProcessIn(time.Hour)}, asynq.TaskStateScheduled},
		{"archived", []asynq.Option{asynq.ProcessIn(time.Hour)}, asynq.TaskStateArchived},
		{"retry", nil, asynq.TaskStateRetry},
		{"active", nil, asynq.TaskStateActive},
		{"completed", nil, asynq.TaskStateCompleted},
	}
	for _, s := range states {
		if dup, err := tasks.Enqueue(ctx, client, tasks.FetchResult{AppID: "TIDA0001", OrderNo: s.order}, s.opts...); err != nil || dup {
			t.Fatalf("first Enqueue(%s) = %v, %v", s.order, dup, err)
		}
	}
	if err := insp.ArchiveTask(tasks.QueueResult, "TIDA0001:archived"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range states {
		for {
			info, err := insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:"+s.order)
			if err == nil && info.State == s.want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: %+v (%v), want state %v", s.order, info, err, s.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// pending: the server never takes a paused queue's tasks.
	if err := insp.PauseQueue(tasks.QueueResult); err != nil {
		t.Fatal(err)
	}
	if dup, err := tasks.Enqueue(ctx, client, tasks.FetchResult{AppID: "TIDA0001", OrderNo: "pending"}); err != nil || dup {
		t.Fatalf("first Enqueue(pending) = %v, %v", dup, err)
	}
	states = append(states, struct {
		order string
		opts  []asynq.Option
		want  asynq.TaskState
	}{"pending", nil, asynq.TaskStatePending})

	for _, s := range states {
		dup, err := tasks.Enqueue(ctx, client, tasks.FetchResult{AppID: "TIDA0001", OrderNo: s.order})
		if err != nil || !dup {
			t.Errorf("Enqueue(%s) while the first is %v = %v, %v, want true, nil (already there)", s.order, s.want, dup, err)
		}
		info, err := insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:"+s.order)
		if err != nil || info.State != s.want {
			t.Errorf("after the duplicate, task %s = %+v (%v), want still %v", s.order, info, err, s.want)
		}
	}
}

func TestDeliverWebhookTask(t *testing.T) {
	t.Parallel()
	p := tasks.DeliverWebhook{AppID: "TIDA0001", OrderNo: "ord0001", Event: tasks.EventDecision}
	task, err := tasks.NewDeliverWebhookTask(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tasks.ParseDeliverWebhook(task.Payload())
	if err != nil || got != p {
		t.Errorf("ParseDeliverWebhook(%s) = %+v, %v, want %+v", task.Payload(), got, err, p)
	}
	for _, in := range []string{`{"app_id":"TIDA0001","order_no":"ord0001","event":"paid"}`, `{"app_id":"TIDA0001","order_no":"ord0001"}`, `{"app_id":"T:1","order_no":"o","event":"decision"}`} {
		if _, err := tasks.ParseDeliverWebhook([]byte(in)); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("ParseDeliverWebhook(%s) error = %v, want ErrInvalidPayload", in, err)
		}
	}
}
