package worker_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/workertest"
)

// TestWaitReplica: in Sentinel mode a task is done only once the replicas
// hold what it wrote. The decision task waits for its record and its
// evidence task, the evidence task for the record; while they are not
// replicated the task is retried without spending its retry budget, and
// the order ends as it would have.
func TestWaitReplica(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := map[string]int{} // keys joined -> calls
	confirm := func(_ context.Context, keys ...string) error {
		mu.Lock()
		defer mu.Unlock()
		k := strings.Join(keys, " ")
		calls[k]++
		if calls[k] <= 2 {
			return redisconn.ErrNotReplicated
		}
		return nil
	}
	b := workertest.New(t, workertest.Options{Config: worker.Config{WaitReplica: true}, Confirm: confirm})
	b.Enqueue(t, "ord-ha", "")
	r := b.WaitFinal(t, "ord-ha", wait)
	if r.Status != orderstore.StatusPassed || r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v, want passed with evidence stored", r)
	}
	id := tasks.TaskID(workertest.AppID, "ord-ha")
	rec := orderstore.RecordKey(workertest.AppID, "ord-ha")
	decision := rec + " " + redisconn.TaskKey(tasks.QueueEvidence, id)
	for _, q := range []string{tasks.QueueResult, tasks.QueueEvidence} {
		info := b.WaitTask(t, q, id, asynq.TaskStateCompleted, wait)
		if info.Retried != 0 {
			t.Errorf("%s task retried %d times (budget spent), want 0: not replicated is no failure", q, info.Retried)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The decision task asks for its record and evidence task while the
	// evidence is pending; once the evidence task (a second later) has
	// finished it, a retry of the decision asks for the record alone.
	if calls[decision] < 2 || calls[decision]+calls[rec] < 5 {
		t.Errorf("confirm calls = %v, want at least 2 for %q (decision, refused twice) and 3 more for %q (evidence)", calls, decision, rec)
	}
	if len(calls) != 2 {
		t.Errorf("confirm asked for %v, want the decision's and the evidence task's keys only", slices.Sorted(maps.Keys(calls)))
	}
}

// TestWaitReplicaUnknownApp: the record of an order whose app is unknown
// is on the replicas before its task is archived; until then the task is
// retried, without spending its budget.
func TestWaitReplicaUnknownApp(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	refused := 0
	confirm := func(_ context.Context, keys ...string) error {
		mu.Lock()
		defer mu.Unlock()
		if refused < 2 {
			refused++
			return redisconn.ErrNotReplicated
		}
		return nil
	}
	b := workertest.New(t, workertest.Options{Config: worker.Config{WaitReplica: true}, Confirm: confirm})
	if _, err := tasks.Enqueue(context.Background(), b.Client, tasks.FetchResult{AppID: "TIDAnope", OrderNo: "o-ha"}); err != nil {
		t.Fatal(err)
	}
	info := b.WaitTask(t, tasks.QueueResult, "TIDAnope:o-ha", asynq.TaskStateArchived, wait)
	if !strings.Contains(info.LastErr, "unknown app") || info.Retried != 0 {
		t.Errorf("archived task: last error %q, retried %d; want unknown app, budget unspent", info.LastErr, info.Retried)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 2 {
		t.Errorf("the replicas were asked %d times before the task was archived, want 2 refusals and then a confirmation", refused)
	}
	if r, err := workertest.ReadRecord(context.Background(), b.Store, "TIDAnope", "o-ha"); err != nil || r == nil || r.Code != orderstore.CodeUnknownApp {
		t.Errorf("record = %+v, %v; want error unknown_app", r, err)
	}
}
