package faults

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
)

// TestKillOnLastAttempt kills a worker with SIGKILL while the only attempt
// of an order enqueued with asynq.MaxRetry(0) waits on the decision call.
// asynq's recoverer archives the task once its lease has run out, without
// running any handler; a fresh worker's reconciler finds it archived,
// runs it again with a fresh budget, and the order gets its record.
func TestKillOnLastAttempt(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDALAST")
	const orderNo = "last-1"
	const interval = "FACESYNC_RECONCILE_INTERVAL=5s"
	// Longer than the provider client's timeout: the call is in flight
	// until the kill.
	s.prov.SetScenario(s.app, orderNo, idasctest.Scenario{Latency: time.Hour})

	w1 := s.startWorker(interval)
	ctx := context.Background()
	if _, err := tasks.Enqueue(ctx, s.client, tasks.FetchResult{AppID: s.app, OrderNo: orderNo}, asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the decision attempt under way", func() bool {
		info, err := s.insp.GetTaskInfo(tasks.QueueResult, tasks.TaskID(s.app, orderNo))
		return err == nil && info.State == asynq.TaskStateActive
	})
	time.Sleep(2 * time.Second) // well inside the client's 10 s timeout
	w1.Kill()
	killed := time.Now()
	eventually(t, 30*time.Second, "the fake to see the caller go away mid-call", func() bool {
		for _, r := range s.prov.Requests() {
			if r.OrderNo == orderNo && strings.HasSuffix(r.Path, "/sync") && r.HTTPStatus == 0 {
				return true
			}
		}
		return false
	})
	if r, err := s.record(ctx, orderNo); err != nil || r != nil {
		t.Fatalf("record before the revival = %+v (%v), want none: the kill must land mid-call", r, err)
	}
	s.prov.SetScenario(s.app, orderNo, idasctest.Scenario{})

	w2 := s.startWorker(interval)
	// Sampled apart, to report when asynq archived the task.
	var archivedAfter atomic.Int64
	recs := func() map[string]*orderstore.Record {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if info, err := s.insp.GetTaskInfo(tasks.QueueResult, tasks.TaskID(s.app, orderNo)); err == nil &&
					info.State == asynq.TaskStateArchived {
					archivedAfter.CompareAndSwap(0, int64(time.Since(killed)))
				}
			}
		}()
		return s.check([]order{{orderNo: orderNo, status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}}, 4*time.Minute)
	}()
	took := time.Since(killed)
	t.Logf("SIGKILL to record: %v (archived by asynq's recoverer about %v after the kill); record %s/%s",
		took.Round(100*time.Millisecond), time.Duration(archivedAfter.Load()).Round(100*time.Millisecond), recs[orderNo].Status, recs[orderNo].Evidence.Status)
	st, err := s.store.State(ctx, s.app, orderNo)
	if err != nil || st.Revivals[orderstore.PhaseDecision] != 1 {
		t.Errorf("revivals = %v (%v), want decision: 1", st.Revivals, err)
	}
	if log := w2.Output(); !strings.Contains(log, `"msg":"archived task revived"`) || !strings.Contains(log, `"order_no":"`+orderNo+`"`) {
		t.Errorf("fresh worker's log does not show the revival")
	}
}
