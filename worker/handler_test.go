package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

const wait = 60 * time.Second

// checkEvidence asserts the record lists exactly kinds, each stored
// byte-exact as the fake served it, with a manifest saying the same.
func checkEvidence(t *testing.T, b *workertest.Env, orderNo string, r *orderstore.Record, kinds ...string) {
	t.Helper()
	if len(r.Evidence.Files) != len(kinds) {
		t.Fatalf("record of %s lists %d files, want %v: %+v", orderNo, len(r.Evidence.Files), kinds, r.Evidence)
	}
	for i, f := range r.Evidence.Files {
		if f.Kind != kinds[i] {
			t.Errorf("file %d kind = %q, want %q", i, f.Kind, kinds[i])
		}
		ct, size, sum := b.Fake.Evidence(appID, orderNo, f.Kind)
		data, gotCT := b.Object(t, f.Key)
		h := sha256.Sum256(data)
		if int64(len(data)) != size || hex.EncodeToString(h[:]) != sum || f.SHA256 != sum || f.Size != size {
			t.Errorf("%s: stored %d bytes sha %x (record says %d %s), fake served %d %s", f.Key, len(data), h, f.Size, f.SHA256, size, sum)
		}
		if gotCT != ct || f.ContentType != ct {
			t.Errorf("%s: content type %q (record %q), want %q", f.Key, gotCT, f.ContentType, ct)
		}
	}
	if r.Evidence.ManifestKey != "evidence/"+appID+"/"+orderNo+"/manifest.json" {
		t.Errorf("manifest key = %q", r.Evidence.ManifestKey)
	}
	raw, _ := b.Object(t, r.Evidence.ManifestKey)
	var m storage.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest %s: %v", raw, err)
	}
	var md orderstore.Decision
	if err := json.Unmarshal(m.Decision, &md); err != nil {
		t.Fatalf("manifest decision %s: %v", m.Decision, err)
	}
	if md != r.Decision || len(m.Files) != len(r.Evidence.Files) || m.FetchedAt == "" {
		t.Errorf("manifest %s does not match record %+v", raw, r)
	}
	for i := range m.Files {
		if m.Files[i] != r.Evidence.Files[i] {
			t.Errorf("manifest file %+v, record file %+v", m.Files[i], r.Evidence.Files[i])
		}
	}
}

func TestPassedWithEvidence(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{S3: true, Scenarios: map[string]idasctest.Scenario{"ord-pass": {PhotoFormat: idasctest.FormatPNG, EscapeSlashes: true, LineBreaks: true}}})
	b.Enqueue(t, "ord-pass", "")
	r := b.WaitFinal(t, "ord-pass", wait)
	if r.Status != orderstore.StatusPassed || r.Code != "0" || r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v, want passed with evidence stored", r)
	}
	if r.IDNo != "110***********1234" || r.Name != "张*" || r.LiveRate == "" || r.Similarity == "" || r.BizSeqNo == "" || r.DecidedAt == "" {
		t.Errorf("record fields = %+v, want masked id and name and the provider's scores", r)
	}
	checkEvidence(t, b, "ord-pass", r, "photo", "video")
	if !strings.HasSuffix(r.Evidence.Files[0].Key, "/photo.png") {
		t.Errorf("photo key = %q, want photo.png", r.Evidence.Files[0].Key)
	}

	info := b.WaitTask(t, tasks.QueueResult, tasks.TaskID(appID, "ord-pass"), asynq.TaskStateCompleted, wait)
	var res orderstore.Record
	if err := json.Unmarshal(info.Result, &res); err != nil || res.Status != orderstore.StatusPassed {
		t.Errorf("fetch_result task result = %s (%v), want the passed record", info.Result, err)
	}
	einfo := b.WaitTask(t, tasks.QueueEvidence, tasks.TaskID(appID, "ord-pass"), asynq.TaskStateCompleted, wait)
	if err := json.Unmarshal(einfo.Result, &res); err != nil || res.Evidence.Status != orderstore.EvidenceStored {
		t.Errorf("fetch_evidence task result = %s (%v), want the stored record", einfo.Result, err)
	}

	// No evidence request earlier than the evidence delay after the decision.
	var decided, firstEvidence time.Time
	for _, q := range b.Fake.Requests() {
		if q.OrderNo != "ord-pass" {
			continue
		}
		if q.GetFile == "" && q.Code == "0" && decided.IsZero() {
			decided = q.Time
		}
		if q.GetFile != "" && firstEvidence.IsZero() {
			firstEvidence = q.Time
		}
	}
	if firstEvidence.Sub(decided) < time.Second {
		t.Errorf("first evidence request %v after the decision, want at least 1s", firstEvidence.Sub(decided))
	}
	if got := b.Fake.TokenMints(appID); got != 1 {
		t.Errorf("token mints = %d, want 1", got)
	}
	entry, ok, err := ticketcache.ReadEntry(context.Background(), b.DB.Client, appID)
	if err != nil || !ok {
		t.Fatalf("ticket entry: %v %v", ok, err)
	}
	checkLogs(t, b, secret, entry.AccessToken, entry.Ticket, "110101199003071234", "张三")
}

// checkLogs fails if any log line, message or field, holds a forbidden
// value.
func checkLogs(t *testing.T, b *workertest.Env, forbidden ...string) {
	t.Helper()
	for _, e := range b.Logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, bad := range forbidden {
			if bad != "" && strings.Contains(line, bad) {
				t.Errorf("a log line holds a secret value (%d characters): %q", len(bad), e.Message)
			}
		}
	}
}

func TestFailedDecisionKeepsCodeAndEvidence(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-fail": {Code: "66660015", Msg: "比对相似度未达到通过标准", CodeAsNumber: true, ResultFirst: true}}})
	b.Enqueue(t, "ord-fail", "1")
	r := b.WaitFinal(t, "ord-fail", wait)
	if r.Status != orderstore.StatusFailed || r.Code != "66660015" || r.Msg != "比对相似度未达到通过标准" || r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v, want failed 66660015 with its message and evidence stored", r)
	}
	checkEvidence(t, b, "ord-fail", r, "photo", "video")
}

func TestInvalidPayloadArchivedWithoutRecord(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	for id, payload := range map[string]string{
		"notjson": `not json`,
		"badid":   `{"app_id":"TIDA0001","order_no":"../x"}`,
		"getfile": `{"app_id":"TIDA0001","order_no":"o1","get_file":"9"}`,
	} {
		if _, err := b.Client.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(payload)), asynq.Queue(tasks.QueueResult), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]string{"notjson": "not a JSON object", "badid": `order_no "../x" is malformed`, "getfile": `get_file "9"`} {
		info := b.WaitTask(t, tasks.QueueResult, id, asynq.TaskStateArchived, wait)
		if !strings.Contains(info.LastErr, want) {
			t.Errorf("archived %s: last error %q, want it to say %q", id, info.LastErr, want)
		}
	}
	keys, err := b.DB.Client.Keys(context.Background(), "facesync:*").Result()
	// The reconciler's lock is the fleet's, keyed from nothing of a task.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == worker.ReconcileLockKey })
	if err != nil || len(keys) != 0 {
		t.Errorf("facesync keys after invalid payloads = %v (%v), want none", keys, err)
	}
}

func TestUnknownAppRecordedAndArchived(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	if _, err := tasks.Enqueue(context.Background(), b.Client, tasks.FetchResult{AppID: "TIDAnope", OrderNo: "o1"}); err != nil {
		t.Fatal(err)
	}
	info := b.WaitTask(t, tasks.QueueResult, "TIDAnope:o1", asynq.TaskStateArchived, wait)
	if !strings.Contains(info.LastErr, "unknown app") {
		t.Errorf("last error = %q", info.LastErr)
	}
	raw, err := b.DB.Client.Get(context.Background(), orderstore.RecordKey("TIDAnope", "o1")).Bytes()
	var r orderstore.Record
	if err != nil || json.Unmarshal(raw, &r) != nil || r.Status != orderstore.StatusError || r.Code != orderstore.CodeUnknownApp || r.Evidence.Status != orderstore.EvidenceSkipped {
		t.Fatalf("record = %s (%v), want error unknown_app with evidence skipped", raw, err)
	}
}

func TestNotReadyThenPassed(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-nr": {NotReady: 2}}})
	b.Enqueue(t, "ord-nr", "2")
	// Between the answers of 66660011 the task waits in asynq's retry set.
	info := b.WaitTask(t, tasks.QueueResult, tasks.TaskID(appID, "ord-nr"), asynq.TaskStateRetry, wait)
	if !strings.Contains(info.LastErr, "not_ready") {
		t.Errorf("retried task's last error = %q, want the provider's not-ready class", info.LastErr)
	}
	r := b.WaitFinal(t, "ord-nr", wait)
	if r.Status != orderstore.StatusPassed || r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v", r)
	}
	checkEvidence(t, b, "ord-nr", r, "photo")
}

func TestNoResultAfterResultWait(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Config: worker.Config{ResultWait: 2 * time.Second}, Scenarios: map[string]idasctest.Scenario{"ord-never": {NotReady: 1000}}})
	b.Enqueue(t, "ord-never", "")
	r := b.WaitFinal(t, "ord-never", wait)
	if r.Status != orderstore.StatusError || r.Code != orderstore.CodeNoResult || r.Evidence.Status != orderstore.EvidenceSkipped {
		t.Fatalf("record = %+v, want error no_result", r)
	}
	b.WaitTask(t, tasks.QueueResult, tasks.TaskID(appID, "ord-never"), asynq.TaskStateCompleted, wait)
}

func TestRejectedTicketIsReplacedOnce(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	// Warm the ticket, then have the provider kill it: the next sync is 400101.
	b.Enqueue(t, "ord-warm", "0")
	b.WaitFinal(t, "ord-warm", wait)
	b.Fake.KillCredentials(appID)
	b.Enqueue(t, "ord-after-kill", "0")
	r := b.WaitFinal(t, "ord-after-kill", wait)
	if r.Status != orderstore.StatusPassed {
		t.Fatalf("record = %+v, want passed after one ticket refresh", r)
	}
	if got := b.Fake.TokenMints(appID); got != 2 {
		t.Errorf("token mints = %d, want 2 (the first, and one after the kill)", got)
	}
}

func TestProviderRejectedAfterThreeTickets(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-rej": {Code: "400101", Msg: "非法请求"}}})
	b.Enqueue(t, "ord-rej", "")
	r := b.WaitFinal(t, "ord-rej", wait)
	if r.Status != orderstore.StatusError || r.Code != orderstore.CodeProviderRejected {
		t.Fatalf("record = %+v, want error provider_rejected", r)
	}
	if got := b.Fake.TokenMints(appID); got != 3 {
		t.Errorf("token mints = %d, want 3 (three fresh tickets)", got)
	}
}

func TestHTTP4xxIsAnError(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-404": {HTTPStatus: 404}}})
	b.Enqueue(t, "ord-404", "")
	r := b.WaitFinal(t, "ord-404", wait)
	if r.Status != orderstore.StatusError || r.Code != orderstore.CodeProviderHTTP4xx || !strings.Contains(r.Msg, "404") {
		t.Fatalf("record = %+v, want error provider_http_4xx naming 404", r)
	}
}

func TestTransientFaultsRetried(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-flaky": {HTTP500: 1, Truncated: 1, EvidenceTruncated: 1}}})
	b.Enqueue(t, "ord-flaky", "")
	r := b.WaitFinal(t, "ord-flaky", wait)
	if r.Status != orderstore.StatusPassed || r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v", r)
	}
	checkEvidence(t, b, "ord-flaky", r, "photo", "video")
}

func TestRetriesExhaustedWritesErrorRecord(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Scenarios: map[string]idasctest.Scenario{"ord-down": {HTTP500: 1000}}})
	// A partner that gave a small budget: the last attempt writes the record.
	b.Enqueue(t, "ord-down", "", asynq.MaxRetry(1))
	r := b.WaitFinal(t, "ord-down", wait)
	if r.Status != orderstore.StatusError || r.Code != orderstore.CodeRetriesExhausted || !strings.Contains(r.Msg, "500") {
		t.Fatalf("record = %+v, want error retries_exhausted naming the 500", r)
	}
	b.WaitTask(t, tasks.QueueResult, tasks.TaskID(appID, "ord-down"), asynq.TaskStateCompleted, wait)
}

func TestDecisionOnlySkipsEvidence(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	b.Enqueue(t, "ord-0", "0")
	r := b.WaitFinal(t, "ord-0", wait)
	if r.Evidence.Status != orderstore.EvidenceSkipped || len(r.Evidence.Files) != 0 {
		t.Fatalf("record = %+v, want evidence skipped", r)
	}
	time.Sleep(1500 * time.Millisecond) // past the evidence delay: nothing may follow
	if n := b.SyncRequests("ord-0", true); n != 0 {
		t.Errorf("evidence requests = %d, want 0", n)
	}
	if _, err := b.Inspector.GetTaskInfo(tasks.QueueEvidence, tasks.TaskID(appID, "ord-0")); err == nil {
		t.Errorf("an evidence task exists for get_file 0")
	}
}

func TestEvidenceUnavailableKeepsPartialSet(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Config: worker.Config{EvidenceWait: 2 * time.Second}, Scenarios: map[string]idasctest.Scenario{
		"ord-novideo": {NoVideo: true},
		"ord-none":    {EvidenceDelay: idasctest.EvidenceNever},
	}})
	b.Enqueue(t, "ord-novideo", "1")
	b.Enqueue(t, "ord-none", "1")
	r := b.WaitFinal(t, "ord-novideo", wait)
	if r.Status != orderstore.StatusPassed || r.Evidence.Status != orderstore.EvidenceUnavailable || !strings.Contains(r.Evidence.Msg, "video") {
		t.Fatalf("record = %+v, want passed with evidence unavailable for lack of video", r)
	}
	checkEvidence(t, b, "ord-novideo", r, "photo")

	r = b.WaitFinal(t, "ord-none", wait)
	if r.Evidence.Status != orderstore.EvidenceUnavailable || r.Evidence.ManifestKey != "" || len(r.Evidence.Files) != 0 {
		t.Fatalf("record = %+v, want evidence unavailable without a manifest", r)
	}
	for _, k := range b.Keys(t) {
		if strings.Contains(k, "/ord-none/") {
			t.Errorf("object %s stored for an order whose evidence never came", k)
		}
	}
}

func TestOversizeEvidenceFails(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Config: worker.Config{MaxEvidenceBytes: 100 << 10}, Scenarios: map[string]idasctest.Scenario{"ord-big": {VideoSize: 300 << 10}}})
	b.Enqueue(t, "ord-big", "")
	r := b.WaitFinal(t, "ord-big", wait)
	if r.Evidence.Status != orderstore.EvidenceFailed || !strings.Contains(r.Evidence.Msg, "large") {
		t.Fatalf("record = %+v, want evidence failed as too large", r)
	}
	// The photo fitted and is kept; the video never reached its key.
	for _, k := range b.Keys(t) {
		if strings.Contains(k, "video") {
			t.Errorf("object %s left for an oversize video", k)
		}
	}
}

func TestDuplicatesFetchEvidenceOnce(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	// A partner's plain asynq client: no task ID, no retention, three times.
	for i := 0; i < 3; i++ {
		if _, err := b.Client.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(`{"app_id":"TIDA0001","order_no":"ord-dup","get_file":1}`)), asynq.Queue(tasks.QueueResult)); err != nil {
			t.Fatal(err)
		}
	}
	r := b.WaitFinal(t, "ord-dup", wait)
	if r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v", r)
	}
	workertest.WaitFor(t, wait, "the decision queue to drain", func() bool {
		q, err := b.Inspector.GetQueueInfo(tasks.QueueResult)
		return err == nil && q.Pending == 0 && q.Active == 0 && q.Retry == 0
	})
	time.Sleep(1500 * time.Millisecond)
	if n := b.SyncRequests("ord-dup", true); n != 1 {
		t.Errorf("evidence requests = %d, want 1", n)
	}
	// A late duplicate changes nothing in the record.
	before := b.Record(t, "ord-dup")
	b.Enqueue(t, "ord-dup", "1", asynq.TaskID("late-dup"))
	b.WaitTask(t, tasks.QueueResult, "late-dup", asynq.TaskStateCompleted, wait)
	if after := b.Record(t, "ord-dup"); after.DecidedAt != before.DecidedAt || after.Evidence.ManifestKey != before.Evidence.ManifestKey {
		t.Errorf("late duplicate changed the record: %+v -> %+v", before, after)
	}
}

func TestManifestFoundRewritesRecord(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	b.Enqueue(t, "ord-crash", "")
	r := b.WaitFinal(t, "ord-crash", wait)
	if r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v", r)
	}
	// As if the worker died between the manifest and the record.
	pending := *r
	pending.Evidence = orderstore.Evidence{Status: orderstore.EvidencePending, Files: []storage.File{}}
	raw, _ := json.Marshal(&pending)
	if err := b.DB.Client.Set(context.Background(), orderstore.RecordKey(appID, "ord-crash"), raw, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	before := b.SyncRequests("ord-crash", true)
	// The completed evidence task is retained: a new one gets a new ID.
	if _, err := b.Client.Enqueue(asynq.NewTask(tasks.TypeFetchEvidence, mustJSON(t, tasks.FetchEvidence{AppID: appID, OrderNo: "ord-crash", GetFile: "1", DecidedAt: time.Now()})), asynq.Queue(tasks.QueueEvidence), asynq.TaskID("again"), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b.WaitTask(t, tasks.QueueEvidence, "again", asynq.TaskStateCompleted, 10*time.Second)
	got := b.Record(t, "ord-crash")
	if got.Evidence.Status != orderstore.EvidenceStored || got.Evidence.ManifestKey != r.Evidence.ManifestKey || len(got.Evidence.Files) != 2 || got.Evidence.Files[1] != r.Evidence.Files[1] {
		t.Errorf("record after adopting the manifest = %+v, want %+v", got.Evidence, r.Evidence)
	}
	if after := b.SyncRequests("ord-crash", true); after != before {
		t.Errorf("evidence requests %d -> %d: a stored manifest must not be fetched again", before, after)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
