package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/cmd/facesync/api"
	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
)

// record returns a decided record for an order, as the worker writes it.
func record(appID, orderNo string, ev orderstore.Evidence) *orderstore.Record {
	return &orderstore.Record{
		Decision: orderstore.Decision{
			AppID: appID, OrderNo: orderNo, Status: orderstore.StatusPassed, Code: "0", Msg: "请求成功",
			BizSeqNo: "seq1", TransactionTime: "20180810150342", OccurredTime: "20180810150152",
			LiveRate: "100", Similarity: "95.0", IDType: "01", IDNo: "110***********1234", Name: "张*",
			DecidedAt: "2026-11-28T01:02:03Z",
		},
		Evidence: ev,
	}
}

func decide(t *testing.T, b *bundle, rec *orderstore.Record) []byte {
	t.Helper()
	d, err := b.store.Decide(context.Background(), rec, "")
	if err != nil || !d.Created {
		t.Fatalf("Decide(%s:%s) = %+v, %v", rec.AppID, rec.OrderNo, d, err)
	}
	return d.Raw
}

func queuedBody(appID, orderNo string) string {
	return fmt.Sprintf(`{"app_id":%q,"order_no":%q,"status":"queued"}`, appID, orderNo)
}

// pendingTasks lists the tasks of the result queue.
func pendingTasks(t *testing.T, b *bundle) []*asynq.TaskInfo {
	t.Helper()
	ts, err := b.insp.ListPendingTasks(tasks.QueueResult)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("ListPendingTasks: %v", err)
	}
	return ts
}

func TestPostOrderIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	body := `{"app_id":"TIDA0001","order_no":"ord0001","get_file":"2"}`
	for i := 0; i < 3; i++ {
		r := b.post(t, b.keyOne, body)
		if r.status != http.StatusAccepted || string(r.body) != queuedBody(appA, "ord0001") {
			t.Fatalf("POST #%d = %v, want 202 %s", i+1, r, queuedBody(appA, "ord0001"))
		}
	}
	ts := pendingTasks(t, b)
	if len(ts) != 1 {
		t.Fatalf("%d pending tasks after 3 identical POSTs, want 1", len(ts))
	}
	if ts[0].ID != "TIDA0001:ord0001" || ts[0].Type != tasks.TypeFetchResult {
		t.Errorf("task = %s %s, want %s TIDA0001:ord0001", ts[0].Type, ts[0].ID, tasks.TypeFetchResult)
	}
	p, err := tasks.ParseFetchResult(ts[0].Payload)
	if err != nil || p != (tasks.FetchResult{AppID: appA, OrderNo: "ord0001", GetFile: tasks.GetFilePhoto}) {
		t.Errorf("payload = %+v, %v, want get_file 2", p, err)
	}
	newN := gatherValue(t, b, "facesync_api_orders_total", map[string]string{"result": "new"})
	dupN := gatherValue(t, b, "facesync_api_orders_total", map[string]string{"result": "duplicate"})
	if newN != 1 || dupN != 2 {
		t.Errorf("facesync_api_orders_total new %v duplicate %v, want 1 and 2", newN, dupN)
	}
}

// gatherValue returns the value of one counter series of b's registry.
func gatherValue(t *testing.T, b *bundle, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestPostOrderGetFileNumber(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	if r := b.post(t, b.keyAll, `{"app_id":"TIDB0002","order_no":"n1","get_file":0}`); r.status != http.StatusAccepted {
		t.Fatalf("POST with get_file 0 (a number) = %v, want 202", r)
	}
	if r := b.post(t, b.keyAll, `{"app_id":"TIDB0002","order_no":"n2"}`); r.status != http.StatusAccepted {
		t.Fatalf("POST without get_file = %v, want 202", r)
	}
	got := map[string]tasks.GetFile{}
	for _, ti := range pendingTasks(t, b) {
		p, err := tasks.ParseFetchResult(ti.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got[p.OrderNo] = p.GetFile
	}
	if got["n1"] != tasks.GetFileNone || got["n2"] != tasks.GetFileBoth {
		t.Errorf("get_file of the tasks = %v, want n1 \"0\", n2 \"1\"", got)
	}
}

func TestDecidedOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	raw := decide(t, b, record(appA, "done1", orderstore.Evidence{Status: orderstore.EvidenceSkipped}))
	r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"done1"}`)
	if r.status != http.StatusOK || !bytes.Equal(r.body, raw) {
		t.Fatalf("POST of a decided order = %v, want 200 with the record as stored %s", r, raw)
	}
	if ts := pendingTasks(t, b); len(ts) != 0 {
		t.Errorf("POST of a decided order enqueued %d tasks, want none", len(ts))
	}
	r = b.get(t, b.keyOne, "/v1/orders/TIDA0001/done1")
	if r.status != http.StatusOK || !bytes.Equal(r.body, raw) {
		t.Fatalf("GET of a decided order = %v, want 200 %s", r, raw)
	}
}

func TestGetOrderQueuedAndNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/q1"); r.status != http.StatusNotFound || r.errorCode() != "not_found" {
		t.Fatalf("GET of an unknown order = %v, want 404 not_found", r)
	}
	post := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"q1"}`)
	get := b.get(t, b.keyOne, "/v1/orders/TIDA0001/q1")
	if get.status != http.StatusAccepted || !bytes.Equal(get.body, post.body) {
		t.Fatalf("GET of a queued order = %v, want 202 with POST's body %s", get, post.body)
	}

	// A task in another state (scheduled for a retry, archived) is queued
	// too; a completed one without a record is not.
	if _, err := b.enq.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(`{"app_id":"TIDA0001","order_no":"q2"}`)),
		asynq.Queue(tasks.QueueResult), asynq.TaskID("TIDA0001:q2"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/q2"); r.status != http.StatusAccepted {
		t.Errorf("GET of an order with a scheduled task = %v, want 202", r)
	}
	if err := b.insp.ArchiveTask(tasks.QueueResult, "TIDA0001:q2"); err != nil {
		t.Fatal(err)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/q2"); r.status != http.StatusAccepted {
		t.Errorf("GET of an order with an archived task = %v, want 202", r)
	}
}

// TestGetOrderCompletedWithoutRecord runs the task to completion with a
// real asynq server whose handler writes no record (a record deleted
// since, say): the order is not queued any more.
func TestGetOrderCompletedWithoutRecord(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	aopt := asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	b := setup(t, options{rdb: db.Client, aopt: aopt})
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"c1"}`); r.status != http.StatusAccepted {
		t.Fatalf("POST = %v", r)
	}
	srv := asynq.NewServer(aopt, asynq.Config{Queues: map[string]int{tasks.QueueResult: 1}, Concurrency: 1,
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	done := make(chan struct{}, 1)
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		done <- struct{}{}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not run within 30s")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := b.insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:c1")
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not completed within 30s: %+v, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/c1"); r.status != http.StatusNotFound {
		t.Errorf("GET of an order whose task completed without a record = %v, want 404", r)
	}
	// Submitted again, it is queued afresh: the completed task would never
	// write a record.
	srv.Shutdown()
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"c1"}`); r.status != http.StatusAccepted {
		t.Fatalf("POST again = %v, want 202", r)
	}
	info, err := b.insp.GetTaskInfo(tasks.QueueResult, "TIDA0001:c1")
	if err != nil || info.State != asynq.TaskStatePending {
		t.Errorf("task after the second POST = %+v, %v, want a pending one", info, err)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/c1"); r.status != http.StatusAccepted {
		t.Errorf("GET after the second POST = %v, want 202", r)
	}
}

// TestOrderOfChecks sends requests that are wrong in two ways at once:
// the check that comes first in the contract's order must answer.
func TestOrderOfChecks(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.purge(appB, "gone1")
	big := `{"app_id":"TIDB0002","order_no":"x","pad":"` + strings.Repeat("a", api.MaxBody) + `"}`
	h := func(kv ...string) []string { return kv }
	auth := func(k string) []string { return h("Authorization", "Bearer "+k) }
	jsonCT := h("Content-Type", "application/json")
	join := func(a ...[]string) []string {
		var out []string
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"unknown route before key", "GET", "/v1/nothing", "", nil, 404, "not_found"},
		{"unknown evidence kind before key", "GET", "/v1/orders/TIDA0001/o/evidence/selfie", "", nil, 404, "not_found"},
		{"trailing slash is another route", "GET", "/v1/orders/TIDA0001/o/", "", auth(b.keyAll), 404, "not_found"},
		{"unclean path", "GET", "/v1//orders", "", auth(b.keyAll), 404, "not_found"},
		{"method before key", "DELETE", "/v1/orders/TIDA0001/o", "", nil, 405, "method_not_allowed"},
		{"method on orders", "GET", "/v1/orders", "", nil, 405, "method_not_allowed"},
		{"method on openapi", "POST", "/v1/openapi.json", "{}", jsonCT, 405, "method_not_allowed"},
		{"no key before body size", "POST", "/v1/orders", big, jsonCT, 401, "unauthorized"},
		{"unknown key", "POST", "/v1/orders", `{}`, join(jsonCT, auth("fsk_nope")), 401, "unauthorized"},
		{"not bearer", "GET", "/v1/orders/TIDA0001/o", "", h("Authorization", "Basic "+b.keyAll), 401, "unauthorized"},
		{"body size before content type", "POST", "/v1/orders", big, join(auth(b.keyAll), h("Content-Type", "text/plain")), 413, "payload_too_large"},
		{"content type before payload", "POST", "/v1/orders", `nope`, join(auth(b.keyAll), h("Content-Type", "text/plain")), 415, "unsupported_media_type"},
		{"no content type", "POST", "/v1/orders", `{"app_id":"TIDA0001","order_no":"o"}`, auth(b.keyAll), 415, "unsupported_media_type"},
		{"payload before apps", "POST", "/v1/orders", `{"app_id":"TIDB0002","order_no":"o/1"}`, join(jsonCT, auth(b.keyOne)), 400, "invalid_payload"},
		{"path ids before apps", "GET", "/v1/orders/TIDB0002/o.1", "", auth(b.keyOne), 400, "invalid_payload"},
		{"apps before purge (POST)", "POST", "/v1/orders", `{"app_id":"TIDB0002","order_no":"gone1"}`, join(jsonCT, auth(b.keyOne)), 403, "forbidden"},
		{"apps before purge (GET)", "GET", "/v1/orders/TIDB0002/gone1", "", auth(b.keyOne), 403, "forbidden"},
		{"apps (evidence)", "GET", "/v1/orders/TIDB0002/o/evidence/photo", "", auth(b.keyOne), 403, "forbidden"},
		{"purged (POST)", "POST", "/v1/orders", `{"app_id":"TIDB0002","order_no":"gone1"}`, join(jsonCT, auth(b.keyAll)), 410, "purged"},
		{"purged (GET)", "GET", "/v1/orders/TIDB0002/gone1", "", auth(b.keyAll), 410, "purged"},
		{"purged (evidence)", "GET", "/v1/orders/TIDB0002/gone1/evidence/manifest", "", auth(b.keyAll), 410, "purged"},
		{"content type with charset", "POST", "/v1/orders", `{"app_id":"TIDA0001","order_no":"cs"}`, join(auth(b.keyOne), h("Content-Type", "application/json; charset=utf-8")), 202, ""},
		{"openapi without key", "GET", "/v1/openapi.json", "", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := b.do(t, tt.method, tt.path, body, tt.hdr...)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("%s %s = %v, want %d %q", tt.method, tt.path, r, tt.status, tt.code)
			}
			if tt.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	if ts := pendingTasks(t, b); len(ts) != 1 {
		t.Errorf("%d tasks enqueued, want 1 (only the accepted request)", len(ts))
	}
	if n, _ := b.rdb.DBSize(context.Background()).Result(); n == 0 {
		t.Error("no key at all in Redis: the one accepted request did not enqueue")
	}
}

func TestAllowHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	for path, want := range map[string]string{
		"/v1/orders": "POST", "/v1/orders/A/b": "GET", "/v1/orders/A/b/evidence/video": "GET", "/v1/openapi.json": "GET",
	} {
		if r := b.do(t, http.MethodPut, path, nil); r.status != 405 || r.header.Get("Allow") != want {
			t.Errorf("PUT %s = %v Allow %q, want 405 Allow %q", path, r, r.header.Get("Allow"), want)
		}
	}
}

func TestInvalidPayload(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	tests := []struct{ name, body, inMessage string }{
		{"no body", ``, "no body"},
		{"not JSON", `app_id=TIDA0001`, "invalid JSON"},
		{"array", `[1]`, "want a JSON object"},
		{"field name in another case", `{"app_id":"TIDA0001","APP_ID":"TIDB0002","order_no":"o"}`, `unknown field "APP_ID"`},
		{"field twice", `{"app_id":"TIDA0001","app_id":"TIDB0002","order_no":"o"}`, "app_id given twice"},
		{"not an object inside", `{"app_id":"TIDA0001",]`, "invalid JSON"},
		{"unknown field", `{"app_id":"TIDA0001","order_no":"o","callback":"x"}`, `unknown field "callback"`},
		{"app id missing", `{"order_no":"o"}`, "app_id is missing"},
		{"order no too long", `{"app_id":"TIDA0001","order_no":"` + strings.Repeat("o", 33) + `"}`, "order_no is 33 bytes long"},
		{"order no bad characters", `{"app_id":"TIDA0001","order_no":"o 1"}`, "order_no"},
		{"order no not a string", `{"app_id":"TIDA0001","order_no":7}`, "order_no must be a string"},
		{"unknown get_file", `{"app_id":"TIDA0001","order_no":"o","get_file":"9"}`, "get_file"},
		{"get_file object", `{"app_id":"TIDA0001","order_no":"o","get_file":{}}`, "get_file must be a string or a number"},
		{"two values", `{"app_id":"TIDA0001","order_no":"o"} {}`, "more than one JSON value"},
		{"ends early", `{"app_id":"TIDA0001"`, "ends early"},
		{"null", `null`, "want a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.post(t, b.keyOne, tt.body)
			var e struct {
				Error struct{ Code, Message string }
			}
			_ = json.Unmarshal(r.body, &e)
			if r.status != 400 || e.Error.Code != "invalid_payload" || !strings.Contains(e.Error.Message, tt.inMessage) {
				t.Errorf("POST %s = %v, want 400 invalid_payload saying %q", tt.body, r, tt.inMessage)
			}
		})
	}
	if n, _ := b.rdb.DBSize(context.Background()).Result(); n != 0 {
		keys, _ := b.rdb.Keys(context.Background(), "*").Result()
		t.Errorf("refused requests left keys in Redis: %q", keys)
	}
}

// TestBodyTooLargeChunked sends a body without Content-Length: the cap
// holds while reading.
func TestBodyTooLargeChunked(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"app_id":"TIDA0001","order_no":"o","x":"`))
		_, _ = pw.Write(bytes.Repeat([]byte("a"), 2*api.MaxBody))
		_ = pw.CloseWithError(io.EOF)
	}()
	r := b.do(t, http.MethodPost, "/v1/orders", pr, "Authorization", "Bearer "+b.keyOne, "Content-Type", "application/json")
	if r.status != 413 || r.errorCode() != "payload_too_large" {
		t.Fatalf("chunked POST over 4 KiB = %v, want 413", r)
	}
	// Exactly at the cap is accepted (and refused for its content only).
	body := `{"app_id":"TIDA0001","order_no":"o"}`
	body += strings.Repeat(" ", api.MaxBody-len(body))
	if r := b.post(t, b.keyOne, body); r.status != 202 {
		t.Fatalf("POST of exactly %d bytes = %v, want 202", len(body), r)
	}
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	b := setup(t, options{rdb: rdb, aopt: asynq.RedisClientOpt{Addr: srv.Addr, DialTimeout: time.Second}})
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"u1"}`); r.status != 202 {
		t.Fatalf("POST with Redis up = %v, want 202", r)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []response{
		b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"u2"}`),
		b.get(t, b.keyOne, "/v1/orders/TIDA0001/u1"),
		b.get(t, b.keyOne, "/v1/orders/TIDA0001/u1/evidence/photo"),
	} {
		if r.status != 503 || r.errorCode() != "unavailable" {
			t.Errorf("with Redis down: %v, want 503 unavailable", r)
		}
	}
}

// TestEvidenceLinks stores evidence in a real S3 server, signs links for
// another address of it (the public endpoint) and downloads them.
func TestEvidenceLinks(t *testing.T) {
	t.Parallel()
	b := setup(t, options{s3: true, publicEndpoint: func(s *storagetest.Server) string {
		return strings.Replace(s.Endpoint, "127.0.0.1", "localhost", 1)
	}})
	ctx := context.Background()
	photo := append([]byte("\xff\xd8\xff\xe0 a jpeg "), bytes.Repeat([]byte{7}, 10000)...)
	f, err := b.sink.PutFile(ctx, appA, "ev1", "photo", bytes.NewReader(photo))
	if err != nil {
		t.Fatal(err)
	}
	rec := record(appA, "ev1", orderstore.Evidence{Status: orderstore.EvidenceUnavailable, Files: []storage.File{f}})
	dec, err := json.Marshal(rec.Decision)
	if err != nil {
		t.Fatal(err)
	}
	mkey, err := b.sink.PutManifest(ctx, &storage.Manifest{AppID: appA, OrderNo: "ev1", Decision: dec, Files: []storage.File{f}})
	if err != nil {
		t.Fatal(err)
	}
	rec.Evidence.ManifestKey = mkey
	decide(t, b, rec)

	r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/ev1/evidence/photo")
	if r.status != http.StatusFound {
		t.Fatalf("GET evidence/photo = %v, want 302", r)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil || loc.Hostname() != "localhost" {
		t.Fatalf("Location %q, want a URL signed for the public endpoint (localhost)", r.header.Get("Location"))
	}
	if exp := loc.Query().Get("X-Amz-Expires"); exp != "300" {
		t.Errorf("X-Amz-Expires = %q, want 300 (5 minutes)", exp)
	}
	if got := download(t, loc.String()); !bytes.Equal(got, photo) {
		t.Errorf("the link downloads %d bytes, want the %d stored", len(got), len(photo))
	}

	r = b.get(t, b.keyOne, "/v1/orders/TIDA0001/ev1/evidence/manifest")
	if r.status != http.StatusFound {
		t.Fatalf("GET evidence/manifest = %v, want 302", r)
	}
	var m storage.Manifest
	if err := json.Unmarshal(download(t, r.header.Get("Location")), &m); err != nil || len(m.Files) != 1 || m.Files[0] != f {
		t.Errorf("the manifest link downloads %+v (%v), want the manifest listing the photo", m, err)
	}

	// Not listed, not an order, no longer stored: 404.
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/ev1/evidence/video"); r.status != 404 {
		t.Errorf("GET evidence/video (none stored) = %v, want 404", r)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/nope/evidence/photo"); r.status != 404 {
		t.Errorf("GET evidence of an unknown order = %v, want 404", r)
	}
	if _, err := b.s3.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &f.Key}); err != nil {
		t.Fatal(err)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/ev1/evidence/photo"); r.status != 404 {
		t.Errorf("GET evidence/photo after the object was deleted = %v, want 404", r)
	}

	// One audit line per link given, with the key id as actor.
	lines := b.audit.FilterMessage("evidence link").All()
	if len(lines) != 2 {
		t.Fatalf("%d evidence_link audit lines, want 2", len(lines))
	}
	got := lines[0].ContextMap()
	want := map[string]any{"audit": true, "action": "evidence_link", "actor": "partner-a", "app_id": appA, "order_no": "ev1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("audit line %s = %v, want %v", k, got[k], v)
		}
	}
	if keys, _ := got["keys"].([]any); len(keys) != 1 || keys[0] != f.Key {
		t.Errorf("audit line keys = %v, want [%s]", got["keys"], f.Key)
	}
}

func download(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %.200s, %v", u, resp.StatusCode, b, err)
	}
	return b
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	r := b.do(t, http.MethodGet, "/v1/openapi.json", nil)
	if r.status != 200 || !bytes.Equal(r.body, api.OpenAPI) {
		t.Fatalf("GET /v1/openapi.json = %d (%d bytes), want 200 with the embedded document", r.status, len(r.body))
	}
	doc := loadDoc(t)
	for _, p := range []string{"/v1/orders", "/v1/orders/{app_id}/{order_no}", "/v1/orders/{app_id}/{order_no}/evidence/{kind}", "/v1/openapi.json"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("openapi.json has no path %s", p)
		}
	}
}

// TestLogs checks the access line of each request (route pattern, status,
// key id) and that no key appears in any log line.
func TestLogs(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"l1"}`)
	b.get(t, b.keyOne, "/v1/orders/TIDA0001/l1")
	b.get(t, b.keyOne+"x", "/v1/orders/TIDA0001/l1")
	b.do(t, http.MethodGet, "/v1/orders/TIDA0001/l1/evidence/x", nil)
	want := []struct {
		route  string
		status int64
		keyID  string
	}{
		{"/v1/orders", 202, "partner-a"},
		{"/v1/orders/{app_id}/{order_no}", 202, "partner-a"},
		{"/v1/orders/{app_id}/{order_no}", 401, ""},
		{"/v1/orders/{app_id}/{order_no}/evidence/{kind}", 404, ""},
	}
	lines := b.access.FilterMessage("request").All()
	if len(lines) != len(want) {
		t.Fatalf("%d access lines, want %d", len(lines), len(want))
	}
	for i, w := range want {
		m := lines[i].ContextMap()
		if m["route"] != w.route || m["status"] != w.status || m["key_id"] != w.keyID || m["method"] == nil || m["duration"] == nil {
			t.Errorf("access line %d = %v, want route %s status %d key_id %q", i, m, w.route, w.status, w.keyID)
		}
	}
	for _, e := range b.access.All() {
		s := fmt.Sprint(e.Message, e.ContextMap())
		for _, secret := range []string{b.keyOne, b.keyAll, "l1"} {
			if strings.Contains(s, secret) {
				t.Errorf("log line %q holds %q", s, secret)
			}
		}
	}
	if v := gatherValue(t, b, "facesync_api_requests_total", map[string]string{"route": "/v1/orders/{app_id}/{order_no}", "code": "401"}); v != 1 {
		t.Errorf("facesync_api_requests_total{route=order,code=401} = %v, want 1", v)
	}
}

func TestKeysFile(t *testing.T) {
	t.Parallel()
	token, line, err := api.NewKey("k1", []string{"A1", "B2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "fsk_") || len(token) < 4+43 {
		t.Errorf("NewKey token %d characters, want fsk_ and 32 random bytes", len(token))
	}
	if strings.Contains(line, token) {
		t.Errorf("the file line holds the key")
	}
	ks, err := api.ParseKeys(strings.NewReader("# keys\n\n" + line + "\nall 0000000000000000000000000000000000000000000000000000000000000000 *\n"))
	if err != nil {
		t.Fatalf("ParseKeys(NewKey's line) = %v", err)
	}
	k := ks.Lookup(token)
	if k == nil || k.ID != "k1" || !k.Allows("A1") || !k.Allows("B2") || k.Allows("C3") {
		t.Errorf("Lookup(new key) = %+v, want k1 for A1 and B2 only", k)
	}
	if ks.Lookup(token+"x") != nil || ks.Lookup("") != nil {
		t.Error("Lookup of a wrong key found one")
	}
	if t2, _, _ := api.NewKey("k2", []string{"A1"}); t2 == token {
		t.Error("two keys alike")
	}

	bad := []struct{ file, want string }{
		{"k1 abc A1\n", "line 1: the second field is not a SHA-256"},
		{"# c\nk1 " + strings.Repeat("a", 64) + "\n", "line 2: want KEY_ID SHA256_HEX APP_ID"},
		{"k1 " + strings.Repeat("a", 64) + " A1\nk1 " + strings.Repeat("b", 64) + " A1\n", "line 2: key id \"k1\" is already used on line 1"},
		{"k1 " + strings.Repeat("a", 64) + " A1\nk2 " + strings.Repeat("a", 64) + " A1\n", "line 2: the same key hash as line 1"},
		{"k1 " + strings.Repeat("a", 64) + " A/1\n", "line 1: app id \"A/1\""},
		{"k:1 " + strings.Repeat("a", 64) + " A1\n", "line 1: key id"},
	}
	for _, tt := range bad {
		if _, err := api.ParseKeys(strings.NewReader(tt.file)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKeys(%q) = %v, want an error with %q", tt.file, err, tt.want)
		}
	}
	for _, apps := range [][]string{nil, {"a b"}} {
		if _, _, err := api.NewKey("k", apps); err == nil {
			t.Errorf("NewKey(k, %q) = nil error, want one", apps)
		}
	}
}

// TestValidatorCatchesDrift shows the response check can fail: bodies and
// statuses the document does not describe are refused.
func TestValidatorCatchesDrift(t *testing.T) {
	t.Parallel()
	v := newValidating(t, nil)
	tests := []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"202 without ids", "POST", "/v1/orders", 202, `{"status":"queued"}`},
		{"202 with another status", "POST", "/v1/orders", 202, `{"app_id":"A","order_no":"b","status":"done"}`},
		{"undocumented status", "POST", "/v1/orders", 418, `{"error":{"code":"internal","message":"x"}}`},
		{"unknown error code", "GET", "/v1/orders/A/b", 404, `{"error":{"code":"nope","message":"x"}}`},
		{"record with a number", "GET", "/v1/orders/A/b", 200, `{"app_id":"A","order_no":"b","status":"passed","code":0,"msg":"","decided_at":"","evidence":{"status":"skipped"}}`},
		{"302 without Location", "GET", "/v1/orders/A/b/evidence/photo", 302, ``},
		{"unknown route with a text body", "GET", "/nope", 404, `not found`},
		{"405 without Allow", "PUT", "/v1/orders", 405, `{"error":{"code":"method_not_allowed","message":"x"}}`},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, "http://127.0.0.1:1"+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {"application/json"}}}
		if err := validateResponse(v.doc, v.router, req, resp, []byte(tt.body)); err == nil {
			t.Errorf("%s: validateResponse = nil, want an error", tt.name)
		}
	}
}

// TestUnreadableRecord: a stored record that is not JSON is the server's
// fault (500), and POST enqueues nothing for it.
func TestUnreadableRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	if err := b.rdb.Set(context.Background(), orderstore.RecordKey(appA, "bad1"), "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if r := b.get(t, b.keyOne, "/v1/orders/TIDA0001/bad1"); r.status != 500 || r.errorCode() != "internal" {
		t.Errorf("GET of an unreadable record = %v, want 500 internal", r)
	}
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"bad1"}`); r.status != 500 {
		t.Errorf("POST of an order with an unreadable record = %v, want 500", r)
	}
	if ts := pendingTasks(t, b); len(ts) != 0 {
		t.Errorf("%d tasks enqueued, want none", len(ts))
	}
}

// TestWaitReplicas runs the API on a Redis master with one replica: a 202
// means the replica has the task; with the replica gone, POST answers 503
// rather than acknowledge an order a failover could lose.
func TestWaitReplicas(t *testing.T) {
	t.Parallel()
	master := ticketcachetest.StartServer(t)
	host, port, _ := strings.Cut(master.Addr, ":")
	replica := ticketcachetest.StartServer(t, "--replicaof", host, port)
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	t.Cleanup(func() { _ = mc.Close(); _ = rc.Close() })
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync within 30s: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := setup(t, options{rdb: mc, aopt: asynq.RedisClientOpt{Addr: master.Addr},
		replicated: func(ctx context.Context, keys ...string) error {
			return redisconn.WaitReplica(ctx, mc, 2*time.Second, keys...)
		}})
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"r1"}`); r.status != 202 {
		t.Fatalf("POST = %v, want 202", r)
	}
	// No wait here: the 202 came after the replica had the task.
	if n, err := rc.Exists(ctx, "asynq:{facesync}:t:TIDA0001:r1").Result(); err != nil || n != 1 {
		t.Fatalf("the replica does not have the task at the 202 (%d, %v)", n, err)
	}
	replica.Kill()
	if r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"r2"}`); r.status != 503 || r.errorCode() != "unavailable" {
		t.Errorf("POST with no replica = %v, want 503 unavailable", r)
	}
	// A retry once a replica is back is acknowledged, with still one task.
	if err := replica.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		r := b.post(t, b.keyOne, `{"app_id":"TIDA0001","order_no":"r2"}`)
		if r.status == 202 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("POST again with the replica back = %v, want 202 within 30s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, _ := rc.Exists(ctx, "asynq:{facesync}:t:TIDA0001:r2").Result(); n != 1 {
		t.Error("the replica does not have the retried task at its 202")
	}
}
