package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
)

// TestDuplicateOrders enqueues every order many times at once, with the
// partner's helper (task ID) and with a plain asynq client (no task ID, no
// retention), on two workers, and again after it finished. Each order is
// fetched with get_file once, stores one set of objects, and keeps its
// first decision.
func TestDuplicateOrders(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDADUP")
	orders := passing("dup", 15)
	s.startWorker()
	s.startWorker()
	payload := func(o order) string { return fmt.Sprintf(`{"app_id":%q,"order_no":%q}`, s.app, o.orderNo) }
	var wg sync.WaitGroup
	for range 3 {
		for _, o := range orders {
			// Errorf, not Fatal: these run outside the test's goroutine.
			wg.Go(func() {
				if err := s.tryEnqueue(o); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				if err := s.tryEnqueueRaw(payload(o)); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	first := s.check(orders, time.Minute)
	s.waitIdle(tasks.QueueResult, time.Minute)
	s.waitIdle(tasks.QueueEvidence, time.Minute)

	// Late duplicates: the helper's is refused by asynq (the finished
	// task is retained), the plain one reaches a worker.
	for _, o := range orders {
		s.enqueue(o)
		s.enqueueRaw(payload(o))
	}
	s.waitIdle(tasks.QueueResult, time.Minute)
	s.waitIdle(tasks.QueueEvidence, time.Minute)

	fetches := s.getFileRequests()
	ctx := context.Background()
	for _, o := range orders {
		if n := fetches[o.orderNo]; n != 1 {
			t.Errorf("evidence fetches for %s = %d, want 1", o.orderNo, n)
		}
		r, err := s.record(ctx, o.orderNo)
		if err != nil || r == nil || r.DecidedAt != first[o.orderNo].DecidedAt || r.Evidence.Status != orderstore.EvidenceStored {
			t.Errorf("record of %s after late duplicates = %+v (%v), want the first decision (%s) with evidence stored",
				o.orderNo, r, err, first[o.orderNo].DecidedAt)
		}
		out, err := s.s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.s3.Bucket), Prefix: aws.String("evidence/" + s.app + "/" + o.orderNo + "/"),
		})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, obj := range out.Contents {
			keys = append(keys, aws.ToString(obj.Key)[len("evidence/"+s.app+"/"+o.orderNo+"/"):])
		}
		if got := strings.Join(keys, ","); got != "manifest.json,photo.jpg,video.mp4" {
			t.Errorf("objects of %s = %s, want manifest.json,photo.jpg,video.mp4", o.orderNo, got)
		}
	}
	if keys, err := s.multipartUploads(); err != nil || len(keys) != 0 {
		t.Errorf("multipart uploads left = %v (%v), want none", keys, err)
	}
}

// TestMalformedPayloads mixes payloads that fail validation and orders of
// an app the workers do not know among valid orders. The invalid ones are
// archived at once with an error naming what is wrong and leave no record;
// the unknown app's orders get an error record (unknown_app) and are
// archived; the valid orders are unaffected.
func TestMalformedPayloads(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDABAD")
	long := strings.Repeat("x", 33)
	malformed := []struct {
		payload string
		why     string // in the archived task's error
	}{
		{`not json`, "not a JSON object"},
		{`[]`, "not a JSON object"},
		{`{"app_id":"TIDABAD"}`, "order_no is missing"},
		{`{"order_no":"m-1"}`, "app_id is missing"},
		{`{"app_id":"TIDABAD","order_no":"a/b"}`, `order_no "a/b" is malformed`},
		{`{"app_id":"TIDABAD","order_no":"` + long + `"}`, "order_no is 33 bytes long"},
		{`{"app_id":"TIDA BAD","order_no":"m-2"}`, `app_id "TIDA BAD" is malformed`},
		{`{"app_id":"TIDABAD","order_no":"m-3","get_file":"9"}`, `get_file "9" is malformed`},
		{`{"app_id":"TIDABAD","order_no":"m-4","get_file":{}}`, "get_file must be a string or a number"},
	}
	valid := passing("ok", 10)
	photoOnly := order{orderNo: "ok-photo", getFile: tasks.GetFilePhoto, status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	decisionOnly := order{orderNo: "ok-none", getFile: tasks.GetFileNone, status: orderstore.StatusPassed, evidence: orderstore.EvidenceSkipped}
	unknown := []string{"u-1", "u-2"}

	s.startWorker()
	for i, o := range valid {
		s.enqueue(o)
		if i < len(malformed) {
			s.enqueueRaw(malformed[i].payload)
		}
	}
	s.enqueueRaw(fmt.Sprintf(`{"app_id":%q,"order_no":%q,"get_file":2}`, s.app, photoOnly.orderNo)) // get_file as a number
	s.enqueue(decisionOnly)
	s.enqueueRaw(`{"app_id":"TIDANONE","order_no":"u-1"}`)
	if _, err := tasks.Enqueue(context.Background(), s.client, tasks.FetchResult{AppID: "TIDANONE", OrderNo: "u-2"}); err != nil {
		t.Fatal(err)
	}
	s.check(append(valid, photoOnly, decisionOnly), time.Minute)
	s.waitIdle(tasks.QueueResult, time.Minute)
	s.waitIdle(tasks.QueueEvidence, time.Minute)

	ctx := context.Background()
	for _, orderNo := range unknown {
		_, raw, err := s.store.Get(ctx, "TIDANONE", orderNo)
		b := string(raw)
		if err != nil || !strings.Contains(b, `"status":"error"`) || !strings.Contains(b, `"code":"unknown_app"`) || !strings.Contains(b, `"status":"skipped"`) {
			t.Errorf("record of TIDANONE:%s = %s (%v), want status error, code unknown_app, evidence skipped", orderNo, b, err)
		}
	}

	archived, err := s.insp.ListArchivedTasks(tasks.QueueResult)
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]string{}
	for _, ti := range archived {
		errs[string(ti.Payload)] = ti.LastErr
	}
	if len(archived) != len(malformed)+len(unknown) {
		t.Errorf("archived tasks = %d, want %d (every malformed payload and unknown app)", len(archived), len(malformed)+len(unknown))
	}
	for _, m := range malformed {
		if e, ok := errs[m.payload]; !ok || !strings.Contains(e, m.why) {
			t.Errorf("archived task %s has error %q (archived %v), want one saying %q", m.payload, e, ok, m.why)
		}
	}

	// Nothing is keyed from an invalid payload: the only records are
	// those of the valid orders and the unknown app's.
	keys, err := s.rdb.Keys(ctx, "facesync:decision:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := len(valid) + 2 + len(unknown); len(keys) != want {
		t.Errorf("decision records = %d (%v), want %d", len(keys), keys, want)
	}
	all, err := s.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		if strings.Contains(k, "a/b") || strings.Contains(k, " ") || strings.Contains(k, long) || strings.Contains(k, "m-") {
			t.Errorf("Redis key %q was built from an invalid payload", k)
		}
	}
}
