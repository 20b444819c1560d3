package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

// classRow is one order of the classification tests: the fake answers it
// by the tokens of its order number (or scenario), and the record must
// come out as want says.
type classRow struct {
	row      string // the row of the contract's table the order stands for
	order    string
	scenario *idasctest.Scenario
	status   string
	code     string
	category string // failed records only
	msg      string // prefix of the record's msg; "" skips the check
	calls    int    // at least this many decision calls reached the fake; 0 skips
}

// runRows enqueues every row's order (decision only) on b and checks its
// record, printing each.
func runRows(t *testing.T, b *workertest.Env, rows []classRow, opts ...asynq.Option) {
	t.Helper()
	for _, r := range rows {
		if r.scenario != nil {
			b.Fake.SetScenario(appID, r.order, *r.scenario)
		}
		b.Enqueue(t, r.order, tasks.GetFileNone, opts...)
	}
	for _, r := range rows {
		rec := b.WaitFinal(t, r.order, 90*time.Second)
		_, raw, err := b.Store.Get(context.Background(), appID, r.order)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-44s %s", r.row+":", raw)
		if rec.Status != r.status || rec.Code != r.code || rec.Category != r.category || !strings.HasPrefix(rec.Msg, r.msg) {
			t.Errorf("%s (%s): record %s, want status %s code %s category %q msg %q…", r.row, r.order, raw, r.status, r.code, r.category, r.msg)
		}
		if n := b.SyncRequests(r.order, false); n < r.calls {
			t.Errorf("%s (%s): %d decision calls reached the fake, want at least %d", r.row, r.order, n, r.calls)
		}
	}
}

// TestClassificationRecords shows a record for each row of the
// classification of provider answers but the throttled one, from the fake
// over HTTP through the worker.
func TestClassificationRecords(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Config: worker.Config{ResultWait: 8 * time.Second}})
	refusedMsg := "provider code "
	rows := []classRow{
		{row: "0 passed", order: "cls-c0", status: orderstore.StatusPassed, code: "0", msg: "请求成功"},
		{row: "66660011 not ready, then passed", order: "cls-nr2", status: orderstore.StatusPassed, code: "0", calls: 3},
		{row: "66660011 not ready past the result wait", order: "cls-nr100000", status: orderstore.StatusError, code: orderstore.CodeNoResult},
		{row: "400101 rejected with 3 fresh tickets", order: "cls-c400101", status: orderstore.StatusError, code: orderstore.CodeProviderRejected},
		{row: "400102 rejected once, then passed", order: "cls-c400102x1", status: orderstore.StatusPassed, code: "0", calls: 2},
		{row: "66660001 rejected once, then passed", order: "cls-c66660001x1", status: orderstore.StatusPassed, code: "0", calls: 2},
		{row: "400103 refused", order: "cls-c400103", status: orderstore.StatusError, code: orderstore.CodeProviderRefused, msg: refusedMsg + "400103: 无权限调用该接口"},
		{row: "400104 refused", order: "cls-c400104", status: orderstore.StatusError, code: orderstore.CodeProviderRefused, msg: refusedMsg + "400104: "},
		{row: "66660002 refused", order: "cls-c66660002", status: orderstore.StatusError, code: orderstore.CodeProviderRefused, msg: refusedMsg + "66660002: 服务已过期"},
		{row: "66660030 refused", order: "cls-c66660030", status: orderstore.StatusError, code: orderstore.CodeProviderRefused, msg: refusedMsg + "66660030: "},
		{row: "400502 bad request", order: "cls-c400502", status: orderstore.StatusError, code: orderstore.CodeProviderRequest, msg: refusedMsg + "400502: 版本号不合法"},
		{row: "400601 bad request", order: "cls-c400601", status: orderstore.StatusError, code: orderstore.CodeProviderRequest, msg: refusedMsg + "400601: "},
		{row: "HTTP 500 transient, then passed", order: "cls-e500x2", status: orderstore.StatusPassed, code: "0", calls: 3},
		{row: "cut body transient, then passed", order: "cls-tr1", status: orderstore.StatusPassed, code: "0", calls: 2},
		{row: "66660021 transient, then passed", order: "cls-c66660021x1", status: orderstore.StatusPassed, code: "0", calls: 2},
		{row: "66660021 past the result wait", order: "cls-c66660021", status: orderstore.StatusFailed, code: idasc.CodeProviderNetwork, category: idasc.CategorySession, calls: 2},
		{row: "HTTP 404", order: "cls-h404", status: orderstore.StatusError, code: orderstore.CodeProviderHTTP4xx, msg: "the provider answered HTTP 404"},
		{row: "other code failed", order: "cls-c66660015", status: orderstore.StatusFailed, code: "66660015", category: idasc.CategoryIdentity},
	}
	runRows(t, b, rows)
	for _, e := range b.Logs.All() {
		if strings.Contains(e.Message, "refused the app's account") {
			return
		}
	}
	t.Error("no log line says the provider refused the app's account")
}

// TestCategoryRecords shows a failed record for each category of a failed
// record, two codes of each row, and the catch-all.
func TestCategoryRecords(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	var rows []classRow
	for _, row := range idasc.CategoryTable() {
		for _, code := range []string{row.Codes[0], row.Codes[len(row.Codes)-1]} {
			rows = append(rows, classRow{row: row.Category + " " + code, order: "cat-c" + code,
				status: orderstore.StatusFailed, code: code, category: row.Category})
		}
	}
	rows = append(rows, classRow{row: "other 9999", order: "cat-c9999", status: orderstore.StatusFailed, code: "9999", category: idasc.CategoryOther})
	if len(rows) != 2*6+1 {
		t.Fatalf("%d rows, want two of each of the six categories and other", len(rows))
	}
	runRows(t, b, rows)
}

// TestThrottledNeverADecision: 400504, 400506 and HTTP 429 are retried
// without spending the task's retry budget, even on its last attempt
// (MaxRetry 0), and every order passes; the app's calls paused
// fleet-wide meanwhile.
func TestThrottledNeverADecision(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{})
	rows := []classRow{
		{row: "400504 throttled twice, then passed", order: "thr-c400504x2", status: orderstore.StatusPassed, code: "0", calls: 3},
		{row: "400506 throttled twice, then passed", order: "thr-c400506x2", status: orderstore.StatusPassed, code: "0", calls: 3},
		{row: "HTTP 429 twice, then passed", order: "thr-h429x2", status: orderstore.StatusPassed, code: "0", calls: 3},
	}
	runRows(t, b, rows, asynq.MaxRetry(0))
	for _, r := range rows {
		info, err := b.Inspector.GetTaskInfo(tasks.QueueResult, tasks.TaskID(appID, r.order))
		if err != nil {
			t.Fatal(err)
		}
		if info.State != asynq.TaskStateCompleted || info.Retried != 0 {
			t.Errorf("%s: task %v retried %d times as failures, want completed with none", r.order, info.State, info.Retried)
		}
	}
	if paused := counter(t, b, "facesync_provider_answers_total", "throttled"); paused < 6 {
		t.Errorf("facesync_provider_answers_total{class=throttled} = %v, want at least 6", paused)
	}
	var pauses int
	for _, e := range b.Logs.All() {
		if strings.Contains(e.Message, "its calls pause fleet-wide") {
			pauses++
		}
	}
	if pauses == 0 {
		t.Error("no log line says the app's calls paused fleet-wide")
	}
}

// TestEvidenceClassification: the evidence call classifies its answers by
// the same table. Throttled is retried and the evidence stored; refused,
// bad request and HTTP 4xx end evidence failed, naming the code.
func TestEvidenceClassification(t *testing.T) {
	t.Parallel()
	b := workertest.New(t, workertest.Options{Config: worker.Config{EvidenceDelay: 2 * time.Second}})
	tests := []struct {
		order    string
		script   []idasctest.Step
		evidence string
		msg      string
	}{
		{"ev-throttled", []idasctest.Step{{Code: "400504", Times: 2}}, orderstore.EvidenceStored, ""},
		{"ev-429", []idasctest.Step{{HTTPStatus: 429, Times: 1}}, orderstore.EvidenceStored, ""},
		{"ev-refused", []idasctest.Step{{Code: "400104"}}, orderstore.EvidenceFailed, "the provider refused the evidence request: provider code 400104: "},
		{"ev-badreq", []idasctest.Step{{Code: "400601"}}, orderstore.EvidenceFailed, "the provider refused the evidence request: provider code 400601: "},
		{"ev-403", []idasctest.Step{{HTTPStatus: 403}}, orderstore.EvidenceFailed, "the provider answered HTTP 403"},
	}
	for _, tt := range tests {
		b.Enqueue(t, tt.order, tasks.GetFilePhoto)
	}
	// The decision passes; then the evidence call meets the script (the
	// fake counts the decision call as the order's first).
	for _, tt := range tests {
		workertest.WaitFor(t, wait, "the decision of "+tt.order, func() bool { return b.Record(t, tt.order) != nil })
		// The first step stands for the decision call already answered.
		script := append([]idasctest.Step{{Code: "0", Times: 1}}, tt.script...)
		b.Fake.SetScenario(appID, tt.order, idasctest.Scenario{Script: script})
	}
	for _, tt := range tests {
		r := b.WaitFinal(t, tt.order, wait)
		_, raw, _ := b.Store.Get(context.Background(), appID, tt.order)
		t.Logf("evidence %-12s %s", tt.order+":", raw)
		if r.Status != orderstore.StatusPassed || r.Evidence.Status != tt.evidence || !strings.HasPrefix(r.Evidence.Msg, tt.msg) {
			t.Errorf("%s: record %s, want passed with evidence %s, msg %q…", tt.order, raw, tt.evidence, tt.msg)
		}
	}
}

// counter sums a counter of the environment's worker over the series
// whose labels hold value.
func counter(t *testing.T, b *workertest.Env, name, value string) float64 {
	t.Helper()
	mfs, err := b.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
