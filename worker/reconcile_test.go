package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

// archiveResult enqueues an order's fetch_result as a partner does, with
// opts, and archives it through the Inspector, as asynq's recoverer would.
func archiveResult(t *testing.T, e *workertest.Env, app, orderNo string, opts ...asynq.Option) {
	t.Helper()
	if _, err := tasks.Enqueue(context.Background(), e.Client, tasks.FetchResult{AppID: app, OrderNo: orderNo}, opts...); err != nil {
		t.Fatal(err)
	}
	if err := e.Inspector.ArchiveTask(tasks.QueueResult, tasks.TaskID(app, orderNo)); err != nil {
		t.Fatalf("ArchiveTask(%s): %v", orderNo, err)
	}
}

// decidePending writes a passed record with evidence pending, as the
// decision handler does.
func decidePending(t *testing.T, e *workertest.Env, orderNo string) {
	t.Helper()
	rec := &orderstore.Record{
		Decision: orderstore.Decision{AppID: appID, OrderNo: orderNo, Status: orderstore.StatusPassed, Code: "0",
			DecidedAt: time.Now().UTC().Format(time.RFC3339)},
		Evidence: orderstore.Evidence{Status: orderstore.EvidencePending, Files: []storage.File{}},
	}
	if _, err := e.Store.Decide(context.Background(), rec, "1"); err != nil {
		t.Fatal(err)
	}
}

// archiveEvidence enqueues an order's evidence task and archives it.
func archiveEvidence(t *testing.T, e *workertest.Env, orderNo string) {
	t.Helper()
	p := tasks.FetchEvidence{AppID: appID, OrderNo: orderNo, GetFile: "1", DecidedAt: time.Now().Add(-2 * time.Second)}
	if _, err := tasks.EnqueueEvidence(context.Background(), e.Client, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.Inspector.ArchiveTask(tasks.QueueEvidence, tasks.TaskID(appID, orderNo)); err != nil {
		t.Fatalf("ArchiveTask(evidence %s): %v", orderNo, err)
	}
}

func taskState(t *testing.T, e *workertest.Env, queue, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := e.Inspector.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatalf("GetTaskInfo(%s, %s): %v", queue, id, err)
	}
	return info
}

func reconcile(t *testing.T, w *worker.Worker) worker.ReconcileStats {
	t.Helper()
	st, err := w.Reconcile(context.Background())
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return st
}

// TestReconcileRevivesArchived archives a fetch_result spent to its last
// attempt and an evidence task of a pending order; one pass runs both
// again with a fresh budget, and the started worker then finishes both.
func TestReconcileRevivesArchived(t *testing.T) {
	t.Parallel()
	e := workertest.New(t, workertest.Options{NoStart: true})
	archiveResult(t, e, appID, "rv-dec", asynq.MaxRetry(0))
	decidePending(t, e, "rv-ev")
	archiveEvidence(t, e, "rv-ev")
	before := taskState(t, e, tasks.QueueResult, tasks.TaskID(appID, "rv-dec"))

	st := reconcile(t, e.Worker)
	if st.Revived != 2 || st.Terminal != 0 {
		t.Fatalf("Reconcile = %+v, want 2 revived", st)
	}
	dec := taskState(t, e, tasks.QueueResult, tasks.TaskID(appID, "rv-dec"))
	if dec.State != asynq.TaskStatePending || dec.Retried != 0 || dec.MaxRetry != 0 || dec.Type != tasks.TypeFetchResult ||
		string(dec.Payload) != string(before.Payload) || dec.Retention != tasks.DefaultRetention {
		t.Errorf("revived fetch_result = %v retried %d/%d type %s payload %s retention %v, want pending 0/0 %s %s %v",
			dec.State, dec.Retried, dec.MaxRetry, dec.Type, dec.Payload, dec.Retention, tasks.TypeFetchResult, before.Payload, tasks.DefaultRetention)
	}
	if ev := taskState(t, e, tasks.QueueEvidence, tasks.TaskID(appID, "rv-ev")); ev.State != asynq.TaskStatePending || ev.Retried != 0 {
		t.Errorf("revived evidence task = %v retried %d, want pending 0", ev.State, ev.Retried)
	}
	for _, o := range []struct{ order, phase string }{{"rv-dec", orderstore.PhaseDecision}, {"rv-ev", orderstore.PhaseEvidence}} {
		s, err := e.Store.State(context.Background(), appID, o.order)
		if err != nil || s.Revivals[o.phase] != 1 {
			t.Errorf("revivals of %s = %v (%v), want %s: 1", o.order, s.Revivals, err, o.phase)
		}
	}
	if n := e.DB.Client.ZCard(context.Background(), orderstore.JournalKey).Val(); n != 0 {
		t.Errorf("revival journal holds %d entries after a whole pass, want 0", n)
	}
	if st := reconcile(t, e.Worker); st.Revived != 0 {
		t.Errorf("second pass revived %d, want 0: nothing is archived", st.Revived)
	}

	if err := e.Worker.Start(); err != nil {
		t.Fatal(err)
	}
	if r := e.WaitFinal(t, "rv-dec", wait); r.Status != orderstore.StatusPassed {
		t.Errorf("revived order ends %s/%s, want passed", r.Status, r.Evidence.Status)
	}
	if r := e.WaitFinal(t, "rv-ev", wait); r.Evidence.Status != orderstore.EvidenceStored {
		t.Errorf("revived evidence ends %s (%s), want stored", r.Evidence.Status, r.Evidence.Msg)
	}
}

// TestReconcileLeaves checks what stays archived: an invalid payload, an
// app not configured, a finished order, a purged one, evidence of an
// order without a record, and a task archived more than 72 h ago.
func TestReconcileLeaves(t *testing.T) {
	t.Parallel()
	e := workertest.New(t, workertest.Options{NoStart: true})
	ctx := context.Background()
	if _, err := e.Client.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(`{"app_id":"bad id","order_no":"x"}`)),
		asynq.Queue(tasks.QueueResult), asynq.TaskID("invalid")); err != nil {
		t.Fatal(err)
	}
	if err := e.Inspector.ArchiveTask(tasks.QueueResult, "invalid"); err != nil {
		t.Fatal(err)
	}
	archiveResult(t, e, "TIDAOTHER", "lv-app")
	decidePending(t, e, "lv-done")
	archiveResult(t, e, appID, "lv-done")
	archiveResult(t, e, appID, "lv-purged")
	if err := e.DB.Client.Set(ctx, orderstore.PurgedKey(appID, "lv-purged"), "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	archiveEvidence(t, e, "lv-norecord")
	if st := reconcile(t, e.Worker); st.Revived != 0 || st.Terminal != 0 || st.Seen != 5 {
		t.Errorf("Reconcile = %+v, want 5 seen, none revived", st)
	}
	for _, id := range []string{"invalid", tasks.TaskID("TIDAOTHER", "lv-app"), tasks.TaskID(appID, "lv-done"), tasks.TaskID(appID, "lv-purged")} {
		if info := taskState(t, e, tasks.QueueResult, id); info.State != asynq.TaskStateArchived {
			t.Errorf("task %s is %v, want still archived", id, info.State)
		}
	}

	// The same archive seen 73 h later: a revivable order is left.
	archiveResult(t, e, appID, "lv-old")
	clock := workertest.NewClock(time.Now().Add(ReviveWindowPlus))
	late, err := worker.New(e.Config, worker.Deps{Redis: e.DB.Client, Provider: idasc.New(e.Fake.URL), Tickets: e.Tickets,
		Sink: e.Sink, Registerer: prometheus.NewRegistry(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(late.Shutdown)
	if st := reconcile(t, late); st.Revived != 0 {
		t.Errorf("Reconcile 73 h later = %+v, want none revived", st)
	}
	if st := reconcile(t, e.Worker); st.Revived != 1 {
		t.Errorf("Reconcile now = %+v, want lv-old revived", st)
	}
}

// ReviveWindowPlus is an hour past the revival window.
const ReviveWindowPlus = worker.ReviveWindow + time.Hour

// TestReconcileThreeRevivals archives the same order's tasks again after
// each revival: three revivals, then the terminal state.
func TestReconcileThreeRevivals(t *testing.T) {
	t.Parallel()
	e := workertest.New(t, workertest.Options{NoStart: true})
	ctx := context.Background()
	archiveResult(t, e, appID, "three-dec", asynq.MaxRetry(0))
	decidePending(t, e, "three-ev")
	archiveEvidence(t, e, "three-ev")
	var counts []string
	for pass := 1; pass <= worker.MaxRevivals+1; pass++ {
		st := reconcile(t, e.Worker)
		ds, _ := e.Store.State(ctx, appID, "three-dec")
		es, _ := e.Store.State(ctx, appID, "three-ev")
		counts = append(counts, fmt.Sprintf("pass %d: %+v revivals decision %d evidence %d", pass, st, ds.Revivals[orderstore.PhaseDecision], es.Revivals[orderstore.PhaseEvidence]))
		if pass <= worker.MaxRevivals {
			if st.Revived != 2 || ds.Revivals[orderstore.PhaseDecision] != pass || es.Revivals[orderstore.PhaseEvidence] != pass {
				t.Fatalf("pass %d: %s, want 2 revived and counts %d", pass, counts[len(counts)-1], pass)
			}
			for _, q := range []string{tasks.QueueResult, tasks.QueueEvidence} {
				id := tasks.TaskID(appID, map[string]string{tasks.QueueResult: "three-dec", tasks.QueueEvidence: "three-ev"}[q])
				if err := e.Inspector.ArchiveTask(q, id); err != nil {
					t.Fatalf("ArchiveTask(%s, %s): %v", q, id, err)
				}
			}
			continue
		}
		if st.Terminal != 2 || st.Revived != 0 {
			t.Fatalf("pass %d = %+v, want 2 terminal", pass, st)
		}
	}
	for _, c := range counts {
		t.Log(c)
	}
	_, raw, err := e.Store.Get(ctx, appID, "three-dec")
	if err != nil {
		t.Fatal(err)
	}
	var r orderstore.Record
	_ = json.Unmarshal(raw, &r)
	if r.Status != orderstore.StatusError || r.Code != orderstore.CodeRetriesExhausted || r.Evidence.Status != orderstore.EvidenceSkipped {
		t.Errorf("record after 3 revivals = %s", raw)
	}
	t.Logf("record of three-dec: %s", raw)
	ev, evRaw, err := e.Store.Get(ctx, appID, "three-ev")
	if err != nil || ev.Evidence.Status != orderstore.EvidenceFailed || ev.Evidence.Msg == "" {
		t.Errorf("record of three-ev = %s (%v), want evidence failed with a msg", evRaw, err)
	}
	t.Logf("record of three-ev: %s", evRaw)
	if st := reconcile(t, e.Worker); st.Revived+st.Terminal != 0 {
		t.Errorf("pass after the terminal state = %+v, want nothing done", st)
	}
}

// TestReconcilerRunsInStartedWorker checks the loop: the started worker
// holds the lock (expiring after 2 × the interval), revives an archived
// task by itself, and hands the lock on at shutdown.
func TestReconcilerRunsInStartedWorker(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	e := workertest.New(t, workertest.Options{Config: worker.Config{ReconcileInterval: interval}, NoStart: true})
	ctx := context.Background()
	archiveResult(t, e, appID, "loop-1", asynq.MaxRetry(0))
	if err := e.Worker.Start(); err != nil {
		t.Fatal(err)
	}
	r := e.WaitFinal(t, "loop-1", wait)
	if r.Status != orderstore.StatusPassed {
		t.Errorf("record = %s, want passed", r.Status)
	}
	ttl := e.DB.Client.PTTL(ctx, worker.ReconcileLockKey).Val()
	if ttl <= 0 || ttl > 2*interval {
		t.Errorf("lock TTL = %v, want in (0, %v]", ttl, 2*interval)
	}
	e.Worker.Shutdown()
	if n := e.DB.Client.Exists(ctx, worker.ReconcileLockKey).Val(); n != 0 {
		t.Errorf("lock still held after Shutdown")
	}
}

// TestReconcileFullArchive reconciles asynq's largest archive in one pass:
// every revivable order is revived, none is skipped, memory stays bounded.
// A third of the orders are finished and stay, interleaved with the
// revivable ones, so that revivals shift later pages.
func TestReconcileFullArchive(t *testing.T) {
	e := workertest.New(t, workertest.Options{NoStart: true})
	ctx := context.Background()
	const n = 10000
	finished := func(i int) bool { return i%3 == 0 }
	for i := range n {
		order := fmt.Sprintf("full-%05d", i)
		if _, err := tasks.Enqueue(ctx, e.Client, tasks.FetchResult{AppID: appID, OrderNo: order}); err != nil {
			t.Fatal(err)
		}
		if finished(i) {
			decidePending(t, e, order)
		}
	}
	if _, err := e.Inspector.ArchiveAllPendingTasks(tasks.QueueResult); err != nil {
		t.Fatal(err)
	}
	// asynq trims its archive on every archive call, to 9 999 tasks.
	archived := e.DB.Client.ZRange(ctx, "asynq:{"+tasks.QueueResult+"}:archived", 0, -1).Val()
	wantRevived := 0
	for _, id := range archived {
		var i int
		if _, err := fmt.Sscanf(id, appID+":full-%05d", &i); err != nil {
			t.Fatalf("archived id %q: %v", id, err)
		}
		if !finished(i) {
			wantRevived++
		}
	}

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	st := reconcile(t, e.Worker)
	took := time.Since(start)
	close(stop)
	sampling.Wait()
	growth := int64(peak.Load()) - int64(base.HeapAlloc)
	t.Logf("one pass over %d archived tasks: %+v in %v; heap %d MiB before, peak %d MiB (+%d MiB)",
		len(archived), st, took.Round(time.Millisecond), base.HeapAlloc>>20, peak.Load()>>20, growth>>20)

	if st.Revived != wantRevived {
		t.Errorf("revived %d, want %d (every unfinished order)", st.Revived, wantRevived)
	}
	left := e.DB.Client.ZCard(ctx, "asynq:{"+tasks.QueueResult+"}:archived").Val()
	if int(left) != len(archived)-wantRevived {
		t.Errorf("%d tasks left archived, want %d finished ones", left, len(archived)-wantRevived)
	}
	q, err := e.Inspector.GetQueueInfo(tasks.QueueResult)
	if err != nil || q.Pending != wantRevived {
		t.Errorf("pending after the pass = %+v (%v), want %d", q, err, wantRevived)
	}
	// Pages are read one at a time; the whole archive's infos would take
	// far less than this, so the bound catches a pass that keeps them all
	// together with what it allocates per task.
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB during the pass, want under 64 MiB", growth>>20)
	}
}

// TestReconcileFinishesInterruptedRevival leaves a journalled revival
// whose archived task was deleted and never enqueued again (a pod killed
// between the two): the next pass enqueues it.
func TestReconcileFinishesInterruptedRevival(t *testing.T) {
	t.Parallel()
	e := workertest.New(t, workertest.Options{NoStart: true})
	ctx := context.Background()
	archiveResult(t, e, appID, "cut-1")
	info := taskState(t, e, tasks.QueueResult, tasks.TaskID(appID, "cut-1"))
	if _, err := e.Store.NoteRevival(ctx, appID, "cut-1", orderstore.PhaseDecision, info.Payload, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := e.Inspector.DeleteTask(tasks.QueueResult, info.ID); err != nil {
		t.Fatal(err)
	}
	st := reconcile(t, e.Worker)
	if st.Replayed != 1 || st.Revived != 0 {
		t.Errorf("Reconcile = %+v, want the interrupted revival replayed", st)
	}
	if got := taskState(t, e, tasks.QueueResult, info.ID); got.State != asynq.TaskStatePending || string(got.Payload) != string(info.Payload) {
		t.Errorf("task after the replay = %v %s, want pending with payload %s", got.State, got.Payload, info.Payload)
	}
	if n := e.DB.Client.ZCard(ctx, orderstore.JournalKey).Val(); n != 0 {
		t.Errorf("journal holds %d entries after the replay, want 0", n)
	}
	if st := reconcile(t, e.Worker); st.Replayed != 0 {
		t.Errorf("second pass replayed %d, want 0", st.Replayed)
	}
}

func TestReconcileIntervalValidate(t *testing.T) {
	t.Parallel()
	var ce *worker.ConfigError
	if err := (worker.Config{ReconcileInterval: -time.Second}).Validate(); !errors.As(err, &ce) || ce.Field != "ReconcileInterval" {
		t.Errorf("Validate(negative interval) = %v, want a ConfigError for ReconcileInterval", err)
	}
	if err := (worker.Config{ReconcileInterval: 5 * time.Second}).Validate(); err != nil {
		t.Errorf("Validate(5s) = %v", err)
	}
}

// TestReconcilerOnePodAtATime starts two workers on one Redis: only the
// lock's holder runs passes, and the other takes over once it stops.
func TestReconcilerOnePodAtATime(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	a := workertest.New(t, workertest.Options{Config: worker.Config{ReconcileInterval: interval}})
	core, logs := observer.New(zap.DebugLevel)
	b, err := worker.New(a.Config, worker.Deps{Redis: a.DB.Client, Provider: idasc.New(a.Fake.URL), Tickets: a.Tickets,
		Sink: a.Sink, Registerer: prometheus.NewRegistry(), Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	passes := func(l *observer.ObservedLogs) int { return l.FilterMessage("reconciler pass done").Len() }
	time.Sleep(5 * interval)
	pa, pb := passes(a.Logs), passes(logs)
	if (pa == 0) == (pb == 0) {
		t.Fatalf("passes: worker a %d, worker b %d; want one worker only (the lock's holder)", pa, pb)
	}
	holder, restLogs := a.Worker, logs
	if pb > 0 {
		holder, restLogs = b, a.Logs
	}
	holder.Shutdown()
	workertest.WaitFor(t, 5*interval, "the other worker to take over", func() bool { return passes(restLogs) > 0 })
}
