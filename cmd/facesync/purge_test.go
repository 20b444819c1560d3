package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
)

// auditLines returns the audit events among a command's stderr lines.
func auditLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, `"audit":true`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// receipts reads every receipt of an order, oldest first.
func receipts(t *testing.T, c *s3.Client, bucket, appID, orderNo string) []map[string]any {
	t.Helper()
	ctx := context.Background()
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("receipts/" + appID + "/" + orderNo + "/")})
	if err != nil {
		t.Fatal(err)
	}
	var rs []map[string]any
	for _, o := range out.Contents {
		obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		var r map[string]any
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("receipt %s: %v: %s", aws.ToString(o.Key), err, b)
		}
		r["_raw"] = string(b)
		rs = append(rs, r)
	}
	return rs
}

// redisKeysWith scans every key of the test's database for s.
func (st *stack) redisKeysWith(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	iter := st.db.Client.Scan(context.Background(), 0, "*", 1000).Iterator()
	for iter.Next(context.Background()) {
		if strings.Contains(iter.Val(), s) {
			out = append(out, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (st *stack) waitStored(t *testing.T, orderNo string) *orderstore.Record {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if r := st.record(t, orderNo); r != nil && r.Evidence.Status != orderstore.EvidencePending {
			if r.Evidence.Status != orderstore.EvidenceStored {
				t.Fatalf("order %s evidence %s, want stored", orderNo, r.Evidence.Status)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not stored by the deadline", orderNo)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (st *stack) syncRequests(orderNo string) int {
	n := 0
	for _, q := range st.fake.Requests() {
		if q.OrderNo == orderNo {
			n++
		}
	}
	return n
}

// TestPurgeStoredOrder: a worker stores an order; verify reads it (audit
// line); purge leaves no object version, no Redis key with the order
// number but the hashed marker, and a receipt with the manifest's hashes
// and no personal information; a re-enqueue then fetches nothing and is
// archived with the purged error; verify says the order was purged.
func TestPurgeStoredOrder(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.startWorker(t)
	const order = "purge-me-1"
	if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", order); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	rec := st.waitStored(t, order)

	code, _, stderr := st.run(t, "verify", "--app-id", testApp, "--order-no", order, "--operator", "auditor-7")
	lines := auditLines(t, stderr)
	if code != 0 || len(lines) != 1 || lines[0]["action"] != "verify" || lines[0]["actor"] != "auditor-7" ||
		lines[0]["app_id"] != testApp || lines[0]["order_no"] != order || lines[0]["level"] != "info" {
		t.Fatalf("verify: exit %d, audit lines %v", code, lines)
	}
	if keys, _ := lines[0]["keys"].([]any); len(keys) != 3 || keys[0] != rec.Evidence.ManifestKey {
		t.Errorf("verify audit keys = %v, want the manifest and both files", lines[0]["keys"])
	}

	// Audit lines come at info whatever the log level says.
	st.env["FACESYNC_LOG_LEVEL"] = "error"
	st.env["FACESYNC_LOG_FORMAT"] = "console"
	code, out, stderr := st.run(t, "purge", "--app-id", testApp, "--order-no", order, "--reason", "subject asked, ticket 42", "--operator", "dpo")
	if code != 0 {
		t.Fatalf("purge: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	t.Logf("purge output:\n%s%s", out, stderr)
	if !strings.Contains(out, "purged "+testApp+":"+order+": 3 object version(s)") {
		t.Errorf("purge stdout %q", out)
	}
	lines = auditLines(t, stderr)
	if len(lines) != 1 || lines[0]["action"] != "purge" || lines[0]["actor"] != "dpo" || lines[0]["order_no"] != order || lines[0]["level"] != "info" {
		t.Fatalf("purge audit lines %v", lines)
	}
	if keys, _ := lines[0]["keys"].([]any); len(keys) != 3 {
		t.Errorf("purge audit keys = %v, want 3", lines[0]["keys"])
	}
	if strings.Contains(stderr, "ticket 42") {
		t.Errorf("the reason (free text) reached the logs: %s", stderr)
	}

	client := st.s3.Client()
	leftObjects := storagetest.Versions(t, client, st.s3.Bucket, "evidence/"+testApp+"/"+order+"/")
	if len(leftObjects) != 0 {
		t.Errorf("object versions left after the purge: %v", leftObjects)
	}
	leftKeys := st.redisKeysWith(t, order)
	if len(leftKeys) != 0 {
		t.Errorf("Redis keys with the order number after the purge: %v", leftKeys)
	}
	t.Logf("after the purge: object versions under evidence/%s/%s/: %v; Redis keys containing %q: %v", testApp, order, leftObjects, order, leftKeys)
	if n := st.db.Client.Exists(context.Background(), orderstore.PurgedKey(testApp, order)).Val(); n != 1 {
		t.Errorf("no purge marker")
	}
	rs := receipts(t, client, st.s3.Bucket, testApp, order)
	if len(rs) != 1 {
		t.Fatalf("%d receipts, want 1", len(rs))
	}
	r := rs[0]
	t.Logf("receipt:\n%s", r["_raw"])
	if r["app_id"] != testApp || r["order_no"] != order || r["reason"] != "subject asked, ticket 42" || r["operator"] != "dpo" {
		t.Errorf("receipt = %v", r)
	}
	sums := map[string]string{}
	for _, f := range rec.Evidence.Files {
		sums[f.Key] = f.SHA256
	}
	objs, _ := r["objects"].([]any)
	if len(objs) != 3 {
		t.Fatalf("receipt lists %d objects, want 3", len(objs))
	}
	for _, o := range objs {
		o := o.(map[string]any)
		key, _ := o["key"].(string)
		if want, ok := sums[key]; ok && o["sha256"] != want {
			t.Errorf("receipt %s sha256 %v, want the manifest's %s", key, o["sha256"], want)
		}
		if s, _ := o["sha256"].(string); len(s) != 64 {
			t.Errorf("receipt %s has no sha256: %v", key, o)
		}
	}
	if last := objs[2].(map[string]any)["key"]; last != rec.Evidence.ManifestKey {
		t.Errorf("last object deleted %v, want the manifest", last)
	}
	for _, pii := range []string{rec.IDNo, rec.Name, "similarity", "live_rate", "110101199003071234"} {
		if strings.Contains(r["_raw"].(string), pii) {
			t.Errorf("receipt holds %q", pii)
		}
	}

	// A task enqueued after the purge fetches nothing and is archived.
	before := st.syncRequests(order)
	if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", order); code != 0 {
		t.Fatalf("enqueue after purge: exit %d: %s", code, stderr)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: st.db.Client.Options().Addr, DB: st.db.Client.Options().DB})
	defer insp.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetTaskInfo(tasks.QueueResult, tasks.TaskID(testApp, order))
		if err == nil && info.State == asynq.TaskStateArchived {
			if !strings.Contains(info.LastErr, "was purged") {
				t.Errorf("archived with %q, want it to say the order was purged", info.LastErr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task after purge not archived: %+v, %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := st.syncRequests(order); n != before {
		t.Errorf("%d provider requests for the purged order after its purge, want 0", n-before)
	}
	if left := storagetest.Versions(t, client, st.s3.Bucket, "evidence/"+testApp+"/"+order+"/"); len(left) != 0 {
		t.Errorf("objects written after the purge: %v", left)
	}
	if n := st.db.Client.Exists(context.Background(), orderstore.RecordKey(testApp, order)).Val(); n != 0 {
		t.Errorf("a record was written after the purge")
	}

	code, _, stderr = st.run(t, "verify", "--app-id", testApp, "--order-no", order)
	if code != 1 || !strings.Contains(stderr, "was purged") {
		t.Errorf("verify after purge: exit %d, stderr %q, want 1 and that it was purged", code, stderr)
	}

	// Purging again: nothing left, an empty receipt, exit 0.
	code, out, _ = st.run(t, "purge", "--app-id", testApp, "--order-no", order, "--reason", "again")
	if code != 0 || !strings.Contains(out, "0 object version(s)") {
		t.Errorf("second purge: exit %d, stdout %q", code, out)
	}
	if rs := receipts(t, client, st.s3.Bucket, testApp, order); len(rs) != 2 || !strings.Contains(rs[1]["_raw"].(string), `"objects": []`) {
		t.Errorf("receipts after the second purge: %v", rs)
	}
}

// lockedOrder stores a photo and manifest under object lock.
func lockedOrder(t *testing.T, st *stack, bucket, mode, order string) {
	t.Helper()
	sink, err := storage.NewS3(st.s3.Client(), storage.Config{Bucket: bucket, LockMode: mode, LockDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f, err := sink.PutFile(ctx, testApp, order, storage.KindPhoto, bytes.NewReader(append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte("p"), 100)...)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.PutManifest(ctx, &storage.Manifest{AppID: testApp, OrderNo: order, Files: []storage.File{f}}); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeObjectLock: COMPLIANCE retention refuses the purge (exit 1,
// nothing deleted, the reason said); GOVERNANCE needs
// --bypass-governance; --file exits 1 when one order was refused and
// purges the others.
func TestPurgeObjectLock(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	bucket := st.s3.NewBucket(t, true)
	st.env["FACESYNC_S3_BUCKET"] = bucket
	lockedOrder(t, st, bucket, storage.LockCompliance, "comp1")
	lockedOrder(t, st, bucket, storage.LockGovernance, "gov1")
	lockedOrder(t, st, bucket, storage.LockGovernance, "gov2")
	client := st.s3.Client()

	code, out, stderr := st.run(t, "purge", "--app-id", testApp, "--order-no", "comp1", "--reason", "r")
	t.Logf("COMPLIANCE refusal:\n%s%s", out, stderr)
	if code != 1 || !strings.Contains(out, "COMPLIANCE retention until") || !strings.Contains(stderr, "nothing deleted") {
		t.Errorf("purge under COMPLIANCE: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if left := storagetest.Versions(t, client, bucket, "evidence/"+testApp+"/comp1/"); len(left) != 2 {
		t.Errorf("versions after a refused purge: %v, want both kept", left)
	}
	if p, _ := st.db.Client.Exists(context.Background(), orderstore.PurgedKey(testApp, "comp1")).Result(); p != 0 {
		t.Errorf("a refused purge set the marker")
	}
	if len(auditLines(t, stderr)) != 0 {
		t.Errorf("a refused purge wrote an audit line: %s", stderr)
	}

	code, out, _ = st.run(t, "purge", "--app-id", testApp, "--order-no", "gov1", "--reason", "r")
	if code != 1 || !strings.Contains(out, "--bypass-governance") {
		t.Errorf("purge under GOVERNANCE without bypass: exit %d, stdout %q", code, out)
	}
	if left := storagetest.Versions(t, client, bucket, "evidence/"+testApp+"/gov1/"); len(left) != 2 {
		t.Errorf("versions after a refused purge: %v", left)
	}

	path := filepath.Join(t.TempDir(), "orders.csv")
	if err := os.WriteFile(path, []byte("# deletion requests\n"+testApp+",comp1\n"+testApp+",gov1\n\n"+testApp+",gov2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = st.run(t, "purge", "--file", path, "--reason", "r", "--bypass-governance")
	if code != 1 || !strings.Contains(stderr, "1 of 3 orders refused") || !strings.Contains(out, "purged "+testApp+":gov1") || !strings.Contains(out, "purged "+testApp+":gov2") {
		t.Errorf("purge --file: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	for order, want := range map[string]int{"comp1": 2, "gov1": 0, "gov2": 0} {
		if left := storagetest.Versions(t, client, bucket, "evidence/"+testApp+"/"+order+"/"); len(left) != want {
			t.Errorf("%s: versions left %v, want %d", order, left, want)
		}
	}
	if n := len(auditLines(t, stderr)); n != 2 {
		t.Errorf("%d audit lines for two purged orders", n)
	}
}

// TestPurgeInterruptedRunAgain: the server fails the manifest's deletion,
// so the first run stops after deleting the files (a receipt lists them,
// exit 2); run again, it deletes the rest and the keys.
func TestPurgeInterruptedRunAgain(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	target, err := url.Parse(st.s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var failDeletes atomic.Bool
	var batches atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Query().Has("delete") && batches.Add(1) > 1 && failDeletes.Load() {
			http.Error(w, `<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	st.env["FACESYNC_S3_ENDPOINT"] = srv.URL

	sink, err := storage.NewS3(st.s3.Client(), storage.Config{Bucket: st.s3.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const order = "interrupted1"
	var files []storage.File
	for kind, head := range map[string][]byte{storage.KindPhoto: {0xFF, 0xD8, 0xFF, 0xE0}, storage.KindVideo: {0, 0, 0, 0x18, 'f', 't', 'y', 'p'}} {
		f, err := sink.PutFile(ctx, testApp, order, kind, bytes.NewReader(append(head, bytes.Repeat([]byte("x"), 300)...)))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if _, err := sink.PutManifest(ctx, &storage.Manifest{AppID: testApp, OrderNo: order, Files: files}); err != nil {
		t.Fatal(err)
	}
	store, _ := orderstore.New(st.db.Client, orderstore.Config{})
	r := &orderstore.Record{Decision: orderstore.Decision{AppID: testApp, OrderNo: order, Status: orderstore.StatusPassed, Code: "0"},
		Evidence: orderstore.Evidence{Status: orderstore.EvidenceStored, Files: files}}
	if _, err := store.Decide(ctx, r, "1"); err != nil {
		t.Fatal(err)
	}

	failDeletes.Store(true)
	code, out, stderr := st.run(t, "purge", "--app-id", testApp, "--order-no", order, "--reason", "r")
	t.Logf("interrupted run:\n%s%s", out, stderr)
	if code != 2 || !strings.Contains(out, "partial "+testApp+":"+order+": 2 object version(s)") || !strings.Contains(stderr, "run the purge again") {
		t.Fatalf("interrupted purge: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	client := st.s3.Client()
	if left := storagetest.Versions(t, client, st.s3.Bucket, "evidence/"+testApp+"/"+order+"/"); len(left) != 1 || !strings.Contains(left[0], storage.ManifestName) {
		t.Fatalf("after the interrupted run: %v, want the manifest alone", left)
	}
	failDeletes.Store(false)
	code, out, stderr = st.run(t, "purge", "--app-id", testApp, "--order-no", order, "--reason", "r")
	if code != 0 || !strings.Contains(out, "1 object version(s)") {
		t.Fatalf("purge run again: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if left := storagetest.Versions(t, client, st.s3.Bucket, "evidence/"+testApp+"/"+order+"/"); len(left) != 0 {
		t.Errorf("left after the second run: %v", left)
	}
	if left := st.redisKeysWith(t, order); len(left) != 0 {
		t.Errorf("Redis keys left: %v", left)
	}
	rs := receipts(t, client, st.s3.Bucket, testApp, order)
	if len(rs) != 2 {
		t.Fatalf("%d receipts, want 2 (the partial one and the last)", len(rs))
	}
	var listed []string
	for _, rc := range rs {
		for _, o := range rc["objects"].([]any) {
			listed = append(listed, o.(map[string]any)["key"].(string))
		}
	}
	if len(listed) != 3 {
		t.Errorf("receipts list %v, want the three objects once each", listed)
	}
}

// TestPurgeCancelsRunningTask: a task of the order is in the middle of a
// slow provider call; the purge cancels it, waits for it to stop and
// deletes it, and nothing of the order is written afterwards.
func TestPurgeCancelsRunningTask(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	w := st.startWorker(t)
	const order = "running1-lat1m"
	if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", order); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: st.db.Client.Options().Addr, DB: st.db.Client.Options().DB})
	defer insp.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetTaskInfo(tasks.QueueResult, tasks.TaskID(testApp, order))
		if err == nil && info.State == asynq.TaskStateActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task never active in a provider call: %+v, %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // into the provider call
	// The provider call lasts a minute, longer than the purge waits for a
	// task (purgeTaskWait): exit 0 means the task was cancelled.
	start := time.Now()
	code, out, stderr := st.run(t, "purge", "--app-id", testApp, "--order-no", order, "--reason", "r")
	if code != 0 || !strings.Contains(out, "1 task(s)") {
		t.Fatalf("purge of a running order: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	t.Logf("purge of a running order took %v", time.Since(start))
	// Give a task that slipped through the time to write, then look.
	time.Sleep(2 * time.Second)
	if left := st.redisKeysWith(t, order); len(left) != 0 {
		t.Errorf("Redis keys with the order number after the purge: %v", left)
	}
	if !strings.Contains(w.logs.String(), "context canceled") {
		t.Errorf("the worker's attempt was not cancelled: %s", w.logs.String())
	}
}

// TestPurgeWithBrokenTaskListing: a task key gone from under its queue's
// listing (evicted, deleted by hand) does not stop a deletion request:
// the order's task is still found and deleted. (asynq 0.26 lists around
// the hole; should a listing fail, the purge warns and looks the order's
// task ID up directly.)
func TestPurgeWithBrokenTaskListing(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	for _, o := range []string{"other1", "victim1"} {
		if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", o); code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", o, code, stderr)
		}
	}
	if n := st.db.Client.Del(context.Background(), "asynq:{facesync}:t:"+testApp+":other1").Val(); n != 1 {
		t.Fatalf("deleted %d task keys, want 1", n)
	}
	code, out, stderr := st.run(t, "purge", "--app-id", testApp, "--order-no", "victim1", "--reason", "r")
	if code != 0 || !strings.Contains(out, "1 task(s)") {
		t.Errorf("purge with a broken listing: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if left := st.redisKeysWith(t, "victim1"); len(left) != 0 {
		t.Errorf("Redis keys left: %v", left)
	}
}
