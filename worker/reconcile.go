package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
)

// asynq can archive a task without running any handler: its recoverer
// archives a task whose last attempt lost its lease (a pod killed, Redis
// lost), once the lease has run out. The reconciler is the fleet's answer:
// every ReconcileInterval one pod at a time runs such tasks again with a
// fresh retry budget, and gives an order its terminal state after
// MaxRevivals.

// DefaultReconcileInterval is how often a pod tries to reconcile the
// archive (FACESYNC_RECONCILE_INTERVAL).
const DefaultReconcileInterval = 30 * time.Second

// MaxRevivals is how many times the fleet runs one order's archived task
// of one phase again; the next time it finds it archived it writes the
// order's terminal state instead.
const MaxRevivals = 3

// ReviveWindow bounds how long ago a task may have been archived to be
// revived: older ones are left to the operator (facesync requeue).
const ReviveWindow = 72 * time.Hour

// ReconcileLockKey is the Redis key of the reconciler's lock: the owner
// pod's random token, expiring after 2 × the interval unless the owner
// renews it.
const ReconcileLockKey = "facesync:reconcile:lock"

// reconcilePageSize is how many archived tasks one Inspector read returns:
// a pass over asynq's largest archive (10 000 tasks) holds one page at a
// time.
const reconcilePageSize = 100

// Outcomes of a Revival; the reconciler's are also the outcome label of
// facesync_revivals_total.
const (
	OutcomeRevived  = "revived"  // the fleet ran the archived task again
	OutcomeTerminal = "terminal" // revived MaxRevivals times: the order's terminal state was written
	OutcomeRequeued = "requeued" // an operator ran it again (not counted toward MaxRevivals)
	OutcomeSkipped  = "skipped"  // left archived; Reason says why
	outcomeError    = "error"
)

// Revival is one archived task run again, ended, or left archived.
type Revival struct {
	Type    string
	Queue   string
	TaskID  string
	AppID   string
	OrderNo string
	Count   int    // the fleet's revivals of this order's phase, this one included
	Outcome string // OutcomeRevived, OutcomeTerminal, OutcomeRequeued or OutcomeSkipped
	Reason  string // why a task was skipped
}

// ReconcileStats counts one pass over the archive.
type ReconcileStats struct {
	Seen     int // archived tasks judged
	Revived  int
	Terminal int
	Replayed int // journalled revivals of an interrupted pass finished
	Pages    int // Inspector page reads
	Webhooks int // due webhook events whose delivery task was queued
}

// archiveQueues are the queues whose archives are reconciled.
var archiveQueues = []string{tasks.QueueResult, tasks.QueueEvidence}

// phaseOf maps the archive's queues onto an order's phases.
var phaseOf = map[string]struct{ typ, phase string }{
	tasks.QueueResult:   {tasks.TypeFetchResult, orderstore.PhaseDecision},
	tasks.QueueEvidence: {tasks.TypeFetchEvidence, orderstore.PhaseEvidence},
}

// archive is what both the fleet's reconciler and an operator's requeue
// read and change.
type archive struct {
	insp   *asynq.Inspector
	client *asynq.Client
	rdb    redis.UniversalClient
	store  *orderstore.Store
	now    func() time.Time
}

// candidate is an archived task judged for running again.
type candidate struct {
	info           *asynq.TaskInfo
	phase          string
	appID, orderNo string
	result         tasks.FetchResult   // phase decision
	evidence       tasks.FetchEvidence // phase evidence
	record         *orderstore.Record  // phase evidence: the pending record
	skip           string              // why it stays archived; "" when it may run again
}

// judge tells whether an archived task may run again: a valid payload of
// the queue's type, an order not purged and not finished.
func (a *archive) judge(ctx context.Context, info *asynq.TaskInfo) (*candidate, error) {
	c := &candidate{info: info}
	want, ok := phaseOf[info.Queue]
	if !ok || info.Type != want.typ {
		c.skip = fmt.Sprintf("type %q is not facesync's task of queue %s", info.Type, info.Queue)
		return c, nil
	}
	c.phase = want.phase
	var err error
	if c.phase == orderstore.PhaseDecision {
		c.result, err = tasks.ParseFetchResult(info.Payload)
		c.appID, c.orderNo = c.result.AppID, c.result.OrderNo
	} else {
		c.evidence, err = tasks.ParseFetchEvidence(info.Payload)
		c.appID, c.orderNo = c.evidence.AppID, c.evidence.OrderNo
	}
	if err != nil {
		c.skip = "its payload failed validation"
		return c, nil
	}
	purged, err := a.store.Purged(ctx, c.appID, c.orderNo)
	if err != nil {
		return nil, err
	}
	if purged {
		c.skip = "the order was purged"
		return c, nil
	}
	rec, _, err := a.store.Get(ctx, c.appID, c.orderNo)
	switch {
	case errors.Is(err, orderstore.ErrNoRecord):
		if c.phase == orderstore.PhaseEvidence {
			c.skip = "the order has no decision record (expired or never written)"
		}
	case err != nil:
		return nil, err
	case c.phase == orderstore.PhaseDecision:
		c.skip = "the order has its decision record"
	case rec.Final():
		c.skip = "the order's evidence is " + rec.Evidence.Status
	default:
		c.record = rec
	}
	return c, nil
}

// rerun deletes the archived task and enqueues its successor: same type,
// queue, task ID and payload, a fresh retry budget of the same size.
// asynq's RunTask would keep the spent budget, so it is not used.
func (a *archive) rerun(ctx context.Context, info *asynq.TaskInfo) error {
	if err := a.insp.DeleteTask(info.Queue, info.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("delete archived task %s: %w", info.ID, err)
	}
	opts := []asynq.Option{asynq.Queue(info.Queue), asynq.TaskID(info.ID), asynq.MaxRetry(info.MaxRetry)}
	if info.Retention > 0 {
		opts = append(opts, asynq.Retention(info.Retention))
	}
	if info.Timeout > 0 {
		opts = append(opts, asynq.Timeout(info.Timeout))
	}
	if info.Deadline.After(a.now()) {
		opts = append(opts, asynq.Deadline(info.Deadline))
	}
	return a.enqueue(ctx, info.Type, info.Payload, opts)
}

func (a *archive) enqueue(ctx context.Context, typ string, payload []byte, opts []asynq.Option) error {
	_, err := a.client.EnqueueContext(ctx, asynq.NewTask(typ, payload), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil // someone queued the order meanwhile: it runs all the same
	}
	if err != nil {
		return fmt.Errorf("enqueue %s again: %w", typ, err)
	}
	return nil
}

// scan pages through a queue's archive, oldest first, calling fn once for
// each task with the time it was archived. Removals shift the tasks after
// them to the front, so each read starts at the first task not yet seen:
// the count of tasks seen and kept is its position (the page holding it is
// read again, its seen part skipped). Every task archived before the scan
// reached the end is seen, unless someone else removes tasks from the
// front meanwhile (the next pass then sees what this one skipped). It
// returns the pages read.
func (a *archive) scan(ctx context.Context, queue string, fn func(info *asynq.TaskInfo, archivedAt time.Time) (removed bool, err error)) (int, error) {
	key := "asynq:{" + queue + "}:archived" // asynq v0.26's layout (internal/base.ArchivedKey)
	pages, kept := 0, 0
	// Each read judges at least one task it had not seen, and asynq keeps
	// at most 10 000 archived tasks: the bound only guards against a loop
	// should someone archive as fast as the scan goes.
	for reads := 0; reads < 2*10000; reads++ {
		if err := ctx.Err(); err != nil {
			return pages, err
		}
		page, skip := kept/reconcilePageSize+1, kept%reconcilePageSize
		infos, err := a.insp.ListArchivedTasks(queue, asynq.PageSize(reconcilePageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return pages, nil
		}
		if err != nil {
			return pages, fmt.Errorf("list archived tasks of %s: %w", queue, err)
		}
		pages++
		if len(infos) <= skip {
			return pages, nil
		}
		infos = infos[skip:]
		// The archive's score is when the task was archived; asynq's
		// TaskInfo only has LastFailedAt, which an Inspector archive
		// leaves unset.
		ids := make([]string, len(infos))
		for i, info := range infos {
			ids[i] = info.ID
		}
		scores, err := a.rdb.ZMScore(ctx, key, ids...).Result()
		if err != nil {
			return pages, fmt.Errorf("read archive times of %s: %w", queue, err)
		}
		for i, info := range infos {
			var at time.Time
			if i < len(scores) && scores[i] > 0 {
				at = time.Unix(int64(scores[i]), 0)
			}
			removed, err := fn(info, at)
			if err != nil {
				return pages, err
			}
			if !removed {
				kept++
			}
		}
	}
	return pages, nil
}

// reconciler runs the fleet's passes in one pod, under the fleet-wide lock.
type reconciler struct {
	w        *Worker
	a        *archive
	interval time.Duration
	token    string
	stop     context.CancelFunc
	done     sync.WaitGroup
}

func newReconciler(w *Worker, rdb redis.UniversalClient) *reconciler {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &reconciler{
		w: w,
		a: &archive{
			insp: asynq.NewInspectorFromRedisClient(rdb), client: w.client, rdb: rdb, store: w.store, now: w.now,
		},
		interval: w.cfg.ReconcileInterval,
		token:    hex.EncodeToString(b),
	}
}

// lockScript takes the lock, or renews it for its owner.
//
// KEYS[1] -> facesync:reconcile:lock
// ARGV[1] -> owner token
// ARGV[2] -> lifetime in ms
//
// Output: 1 when the caller holds the lock, 0 when another does.
var lockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// unlockScript deletes the lock only for its owner.
//
// KEYS[1] -> facesync:reconcile:lock
// ARGV[1] -> owner token
//
// Output: 1 when deleted, else 0.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

func (r *reconciler) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			r.tryPass(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// shutdown ends the loop and hands the lock on at once rather than after
// its expiry.
func (r *reconciler) shutdown() {
	if r.stop == nil {
		return
	}
	r.stop()
	r.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = unlockScript.Run(ctx, r.a.rdb, []string{ReconcileLockKey}, r.token).Err()
}

// tryPass runs one pass if this pod holds, or can take, the lock. The
// owner keeps it from pass to pass, so the fleet's passes stay one
// interval apart; a killed owner's lock lapses after 2 × the interval.
func (r *reconciler) tryPass(ctx context.Context) {
	log := r.w.log.With(zap.String("component", "reconciler"))
	held, err := lockScript.Run(ctx, r.a.rdb, []string{ReconcileLockKey}, r.token, (2 * r.interval).Milliseconds()).Int()
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("could not take the reconciler lock", zap.Error(err))
		}
		return
	}
	if held != 1 {
		return
	}
	st, err := r.w.Reconcile(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("reconciler pass failed; the next one picks up from the start", zap.Error(err))
	case st.Revived+st.Terminal+st.Replayed+st.Webhooks > 0:
		log.Info("reconciler pass done", zap.Int("seen", st.Seen), zap.Int("revived", st.Revived),
			zap.Int("terminal", st.Terminal), zap.Int("replayed", st.Replayed), zap.Int("webhooks", st.Webhooks), zap.Int("pages", st.Pages))
	default:
		log.Debug("reconciler pass done", zap.Int("seen", st.Seen), zap.Int("pages", st.Pages))
	}
}

// Reconcile runs one pass over the archive now. It does not take the
// fleet's lock: a started worker's loop takes it before each pass, and
// tests call Reconcile on a worker that was never started. It finishes the revivals an
// interrupted pass journalled, then runs again every archived
// faceid:fetch_result of a configured app with a valid payload, archived
// within ReviveWindow, whose order is not purged and has no record, and
// every archived faceid:fetch_evidence whose order's evidence is pending;
// an order whose phase was revived MaxRevivals times gets its terminal
// state instead.
func (w *Worker) Reconcile(ctx context.Context) (ReconcileStats, error) {
	r := w.rc
	var st ReconcileStats
	n, err := r.replay(ctx)
	st.Replayed = n
	if err != nil {
		return st, err
	}
	for _, queue := range archiveQueues {
		pages, err := r.a.scan(ctx, queue, func(info *asynq.TaskInfo, at time.Time) (bool, error) {
			st.Seen++
			rv, err := r.consider(ctx, info, at)
			if err != nil {
				w.m.revivals.WithLabelValues(info.Type, outcomeError).Inc()
				return false, err
			}
			switch rv.Outcome {
			case OutcomeRevived:
				st.Revived++
				return true, nil
			case OutcomeTerminal:
				st.Terminal++
			}
			return false, nil
		})
		st.Pages += pages
		if err != nil {
			return st, err
		}
	}
	// Webhook events marked due whose delivery task a crash kept from
	// being queued: no event is lost to a crash.
	// The due set is scored by the wall clock (orderstore), not Deps.Now.
	n, err = w.EnqueueDueEvents(ctx, time.Now())
	st.Webhooks = n
	if err != nil {
		return st, err
	}
	return st, nil
}

// consider revives one archived task, writes its order's terminal state,
// or leaves it.
func (r *reconciler) consider(ctx context.Context, info *asynq.TaskInfo, archivedAt time.Time) (Revival, error) {
	w := r.w
	rv := Revival{Type: info.Type, Queue: info.Queue, TaskID: info.ID, Outcome: OutcomeSkipped}
	if archivedAt.IsZero() || w.now().Sub(archivedAt) > ReviveWindow {
		rv.Reason = "archived more than " + ReviveWindow.String() + " ago"
		return rv, nil
	}
	c, err := r.a.judge(ctx, info)
	if err != nil {
		return rv, err
	}
	rv.AppID, rv.OrderNo = c.appID, c.orderNo
	if c.skip == "" && !w.apps[c.appID] {
		c.skip = "app " + c.appID + " is not configured"
	}
	if c.skip != "" {
		rv.Reason = c.skip
		return rv, nil
	}
	state, err := w.store.State(ctx, c.appID, c.orderNo)
	if err != nil {
		return rv, err
	}
	log := w.log.With(zap.String("component", "reconciler"), zap.String("type", info.Type),
		zap.String("app_id", c.appID), zap.String("order_no", c.orderNo))
	if done := state.Revivals[c.phase]; done >= MaxRevivals {
		if err := r.terminal(ctx, c, done, log); err != nil {
			return rv, err
		}
		rv.Count, rv.Outcome = done, OutcomeTerminal
		w.m.revivals.WithLabelValues(info.Type, OutcomeTerminal).Inc()
		log.Warn("archived task revived too often: terminal state written", zap.Int("revivals", done),
			zap.String("last_error", info.LastErr))
		return rv, nil
	}
	// Noted first: a pass that dies after the delete finds the journal
	// entry next time and enqueues the task.
	n, err := w.store.NoteRevival(ctx, c.appID, c.orderNo, c.phase, info.Payload, w.now())
	if err != nil {
		return rv, err
	}
	if err := r.a.rerun(ctx, info); err != nil {
		return rv, err
	}
	if err := w.store.RevivalDone(ctx, c.appID, c.orderNo, c.phase); err != nil {
		log.Warn("could not clear the revival journal; the next pass does", zap.Error(err))
	}
	rv.Count, rv.Outcome = n, OutcomeRevived
	w.m.revivals.WithLabelValues(info.Type, OutcomeRevived).Inc()
	log.Info("archived task revived", zap.Int("revivals", n), zap.Int("max_retry", info.MaxRetry),
		zap.String("last_error", info.LastErr))
	return rv, nil
}

// terminal writes the state an order ends in when its phase was revived
// MaxRevivals times and asynq archived it once more: an error record
// (retries_exhausted), or evidence failed, keeping what was stored.
func (r *reconciler) terminal(ctx context.Context, c *candidate, revivals int, log *zap.Logger) error {
	w := r.w
	t := asynq.NewTask(c.info.Type, c.info.Payload) // no result writer: nothing is published as the task's result
	why := fmt.Sprintf("asynq archived the task without finishing it after the fleet had run it again %d times", revivals)
	if c.phase == orderstore.PhaseDecision {
		rec := errorRecord(c.appID, c.orderNo, orderstore.CodeRetriesExhausted, why+"; no decision could be obtained")
		if _, err := w.record(ctx, t, c.result, rec, log); err != nil {
			return err
		}
		return nil
	}
	state, err := w.store.State(ctx, c.appID, c.orderNo)
	if err != nil {
		return err
	}
	if _, err := w.finishEvidence(ctx, t, c.evidence, c.record, state.Files, orderstore.EvidenceFailed, why, log); err != nil {
		return err
	}
	return nil
}

// replay finishes revivals journalled by a pass that was interrupted
// after deleting an archived task and before enqueueing its successor.
func (r *reconciler) replay(ctx context.Context) (int, error) {
	w := r.w
	pending, err := w.store.PendingRevivals(ctx, w.now().Add(-r.interval), 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pending {
		queue, typ := tasks.QueueResult, tasks.TypeFetchResult
		if p.Phase == orderstore.PhaseEvidence {
			queue, typ = tasks.QueueEvidence, tasks.TypeFetchEvidence
		}
		needed := p.Payload != nil
		if needed {
			_, err := r.a.insp.GetTaskInfo(queue, tasks.TaskID(p.AppID, p.OrderNo))
			switch {
			case err == nil:
				needed = false // queued, running, archived again or done: the task exists
			case !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound):
				return n, fmt.Errorf("look up revived task: %w", err)
			}
		}
		if needed {
			opts := []asynq.Option{asynq.Queue(queue), asynq.TaskID(tasks.TaskID(p.AppID, p.OrderNo)),
				asynq.MaxRetry(tasks.DefaultMaxRetry), asynq.Retention(tasks.DefaultRetention)}
			if err := r.a.enqueue(ctx, typ, p.Payload, opts); err != nil {
				return n, err
			}
			n++
			w.log.Info("interrupted revival finished", zap.String("component", "reconciler"), zap.String("type", typ),
				zap.String("app_id", p.AppID), zap.String("order_no", p.OrderNo))
		}
		if err := w.store.RevivalDone(ctx, p.AppID, p.OrderNo, p.Phase); err != nil {
			return n, err
		}
	}
	return n, nil
}

// RequeueFilter picks the archived tasks Requeue runs: one order (AppID
// and OrderNo), one app's (AppID), or every one (neither).
type RequeueFilter struct {
	AppID   string
	OrderNo string
}

// Requeue runs archived tasks again now, as an operator asks (facesync
// requeue): every archived faceid:fetch_result and faceid:fetch_evidence
// the filter picks, with a valid payload and an unfinished order not
// purged, however long ago it was archived. It calls each for every task
// it ran (OutcomeRequeued) or, for one order, left (OutcomeSkipped), and
// returns how many it ran. An operator's requeue does not count toward
// MaxRevivals.
func Requeue(ctx context.Context, rdb redis.UniversalClient, f RequeueFilter, each func(Revival)) (int, error) {
	if f.OrderNo != "" && f.AppID == "" {
		return 0, errors.New("worker: requeue of an order needs its app id")
	}
	store, err := orderstore.New(rdb, orderstore.Config{})
	if err != nil {
		return 0, err
	}
	// Both share rdb, which the caller closes: their Close is a no-op.
	a := &archive{insp: asynq.NewInspectorFromRedisClient(rdb), client: asynq.NewClientFromRedisClient(rdb), rdb: rdb, store: store, now: time.Now}
	ran := 0
	try := func(info *asynq.TaskInfo, report bool) (bool, error) {
		c, err := a.judge(ctx, info)
		if err != nil {
			return false, err
		}
		if f.AppID != "" && c.appID != f.AppID {
			return false, nil
		}
		rv := Revival{Type: info.Type, Queue: info.Queue, TaskID: info.ID, AppID: c.appID, OrderNo: c.orderNo}
		if c.skip != "" {
			if report {
				rv.Outcome, rv.Reason = OutcomeSkipped, c.skip
				each(rv)
			}
			return false, nil
		}
		if err := a.rerun(ctx, info); err != nil {
			return false, err
		}
		ran++
		rv.Outcome = OutcomeRequeued
		each(rv)
		return true, nil
	}
	for _, queue := range archiveQueues {
		if f.OrderNo != "" {
			info, err := a.insp.GetTaskInfo(queue, tasks.TaskID(f.AppID, f.OrderNo))
			if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return ran, fmt.Errorf("look up task %s: %w", tasks.TaskID(f.AppID, f.OrderNo), err)
			}
			if info.State != asynq.TaskStateArchived {
				each(Revival{Type: info.Type, Queue: queue, TaskID: info.ID, AppID: f.AppID, OrderNo: f.OrderNo,
					Outcome: OutcomeSkipped, Reason: "the task is " + info.State.String() + ", not archived"})
				continue
			}
			if _, err := try(info, true); err != nil {
				return ran, err
			}
			continue
		}
		if _, err := a.scan(ctx, queue, func(info *asynq.TaskInfo, _ time.Time) (bool, error) {
			return try(info, false)
		}); err != nil {
			return ran, err
		}
	}
	return ran, nil
}
