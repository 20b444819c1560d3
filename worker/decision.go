package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/tracing"
)

// maxRejectedTickets is how many fresh tickets the provider may refuse for
// one order before it is recorded as provider_rejected.
const maxRejectedTickets = 3

// HandleFetchResult handles faceid:fetch_result: it takes the decision
// from the provider (without get_file), records it, and enqueues the
// evidence task.
func (w *Worker) HandleFetchResult(ctx context.Context, t *asynq.Task) error {
	start := w.now()
	p, err := tasks.ParseFetchResult(t.Payload())
	if err != nil {
		return w.invalidPayload(t, err)
	}
	tracing.Order(ctx, p.AppID, p.OrderNo)
	log := w.taskLog(ctx, t, p.AppID, p.OrderNo)
	outcome, err := w.decide(ctx, t, p, log)
	outcome, err = purgedEnd(p.AppID, p.OrderNo, outcome, err)
	w.finish(log, t, start, outcome, err)
	return err
}

// invalidPayload archives a task whose payload failed validation. Nothing
// is keyed from it: the archived task and its error are the whole trace.
func (w *Worker) invalidPayload(t *asynq.Task, err error) error {
	w.m.tasks.WithLabelValues(t.Type(), "invalid_payload").Inc()
	w.log.Warn("invalid payload archived", zap.String("type", t.Type()), zap.Error(err))
	return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
}

// decide takes and records the decision. A duplicate of a decided order
// repeats the cheap decision call (the contract allows it) instead of
// reading the record first: recording finds the first decision and keeps it.
func (w *Worker) decide(ctx context.Context, t *asynq.Task, p tasks.FetchResult, log *zap.Logger) (string, error) {
	if !w.apps[p.AppID] {
		rec := errorRecord(p.AppID, p.OrderNo, orderstore.CodeUnknownApp, "app "+p.AppID+" is not configured on this worker (FACESYNC_APPS)")
		if _, err := w.record(ctx, t, p, rec, log); err != nil {
			return "retry", err
		}
		// The task ends archived, and track waits for replicas only after
		// a success: wait here, or a failover could lose the record of an
		// order asynq no longer runs.
		if w.cfg.WaitReplica {
			if err := w.waitReplica(ctx, t); err != nil {
				return "retry", err
			}
		}
		return orderstore.StatusError, fmt.Errorf("unknown app %q: %w", p.AppID, asynq.SkipRetry)
	}

	tk, err := w.tickets.Get(ctx, p.AppID)
	if err != nil {
		err = fmt.Errorf("sign ticket: %w", err)
		if idasc.IsThrottled(err) {
			return "throttled", throttled(err, 0)
		}
		return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, err), log)
	}
	var res *idasc.Result
	err = w.paced(ctx, p.AppID, p.OrderNo, "sync", log, func() error {
		var serr error
		res, serr = w.provider.Sync(ctx, idasc.SyncRequest{AppID: p.AppID, OrderNo: p.OrderNo, Ticket: tk.Value})
		return serr
	})
	switch {
	case isThrottled(err):
		// Never a decision, never retries_exhausted: a rate limit says
		// nothing of the user's session.
		return "throttled", err
	case errors.Is(err, orderstore.ErrPurged):
		return "purged", err // nothing was sent
	}
	var re *retryError
	if errors.As(err, &re) {
		return w.retryOrGiveUp(ctx, t, p, err, log) // the pacing's Redis failed
	}

	var rec *orderstore.Record
	switch class := idasc.ClassOf(err); {
	case class == idasc.ClassNone:
		rec = recordFromResult(p.AppID, p.OrderNo, res, orderstore.StatusPassed)
	case class == idasc.ClassFailed:
		rec = recordFromResult(p.AppID, p.OrderNo, res, orderstore.StatusFailed)
	case class == idasc.ClassNotReady:
		since, serr := w.store.NoteNotReady(ctx, p.AppID, p.OrderNo, w.now())
		if serr != nil {
			return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, serr), log)
		}
		if w.now().Sub(since) < w.cfg.ResultWait {
			return w.retryOrGiveUp(ctx, t, p, retry(retryNotReady, err), log)
		}
		rec = errorRecord(p.AppID, p.OrderNo, orderstore.CodeNoResult,
			fmt.Sprintf("the provider had no result for the order after waiting %v (code %s)", w.cfg.ResultWait, idasc.CodeNotReady))
	case idasc.IsProviderNetwork(err) && res != nil:
		// Transient, but only for the result wait since the first such
		// answer: then the session's outcome is taken as final.
		since, serr := w.store.NoteProviderNetwork(ctx, p.AppID, p.OrderNo, w.now())
		if serr != nil {
			return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, serr), log)
		}
		if w.now().Sub(since) < w.cfg.ResultWait {
			return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, err), log)
		}
		rec = recordFromResult(p.AppID, p.OrderNo, res, orderstore.StatusFailed)
	case class == idasc.ClassRejected:
		if rerr := w.tickets.Reject(ctx, p.AppID, tk.Generation); rerr != nil {
			log.Warn("could not report the refused ticket", zap.Int64("generation", tk.Generation), zap.Error(rerr))
		}
		n, rerr := w.store.CountRejected(ctx, p.AppID, p.OrderNo, orderstore.PhaseDecision, tk.Generation)
		if rerr != nil {
			return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, rerr), log)
		}
		log.Warn("provider refused the ticket", zap.Int64("generation", tk.Generation), zap.Int("refused_generations", n))
		if n < maxRejectedTickets {
			return w.retryOrGiveUp(ctx, t, p, retry(retryRejected, err), log)
		}
		rec = errorRecord(p.AppID, p.OrderNo, orderstore.CodeProviderRejected,
			fmt.Sprintf("the provider refused the request (code %s) with %d fresh tickets", idasc.CodeRejected, n))
	case class == idasc.ClassRefused:
		log.Warn("the provider refused the app's account for the call", zap.Error(err))
		rec = errorRecord(p.AppID, p.OrderNo, orderstore.CodeProviderRefused, providerCodeMsg(err))
	case class == idasc.ClassBadRequest:
		log.Warn("the provider refused the request's version or body", zap.Error(err))
		rec = errorRecord(p.AppID, p.OrderNo, orderstore.CodeProviderRequest, providerCodeMsg(err))
	case class == idasc.ClassHTTP4xx:
		rec = errorRecord(p.AppID, p.OrderNo, orderstore.CodeProviderHTTP4xx, "the provider answered "+errorStatus(err))
	default:
		return w.retryOrGiveUp(ctx, t, p, retry(retryTransient, err), log)
	}
	if rec.Status == orderstore.StatusFailed {
		// So a partner can tell its user what to do.
		rec.Category = idasc.Category(rec.Code)
	}
	return w.record(ctx, t, p, rec, log)
}

// retryOrGiveUp returns err for asynq to retry, unless this is the last
// attempt the task's retry budget allows: then it writes the error record
// itself, so no order ends without one.
func (w *Worker) retryOrGiveUp(ctx context.Context, t *asynq.Task, p tasks.FetchResult, err error, log *zap.Logger) (string, error) {
	// An error asynq does not count as a failure (throttled, paused,
	// Redis failing over) never ends the budget: the task comes back.
	if ctx.Err() != nil || !lastAttempt(ctx) || !IsFailure(err) {
		return "retry", err
	}
	rec := errorRecord(p.AppID, p.OrderNo, orderstore.CodeRetriesExhausted,
		"the task's retry budget ran out before a decision could be obtained; last error: "+err.Error())
	outcome, rerr := w.record(ctx, t, p, rec, log)
	if rerr != nil {
		return "retry", errors.Join(err, rerr)
	}
	return outcome, nil
}

// record writes a final decision unless the order has one (the first
// wins), publishes the stored record as the task's result and makes sure
// the evidence task it calls for exists. It returns the outcome: the new
// record's status, or "duplicate".
func (w *Worker) record(ctx context.Context, t *asynq.Task, p tasks.FetchResult, rec *orderstore.Record, log *zap.Logger) (string, error) {
	now := w.now()
	rec.DecidedAt = now.UTC().Format(time.RFC3339)
	rec.Evidence = orderstore.Evidence{Status: orderstore.EvidenceSkipped, Files: []storage.File{}}
	getFile := p.GetFile.Or()
	if rec.Status != orderstore.StatusError && getFile != tasks.GetFileNone {
		rec.Evidence.Status = orderstore.EvidencePending
	}
	// The task's result is written by the same script as the record.
	c, err := w.store.DecideWithResult(ctx, rec, string(getFile), resultKey(ctx, t))
	if err != nil {
		return "retry", retry(retryTransient, err)
	}
	w.enqueueDueEvents(ctx, rec.AppID, rec.OrderNo, log) // the decision event, marked due by Decide
	outcome, decided := c.Record.Status, now
	if !c.Created {
		outcome, decided = "duplicate", decidedAt(c.Record, now)
		if c.GetFile != "" {
			getFile = tasks.GetFile(c.GetFile) // the first order's wish, not the duplicate's
		}
	}
	if err := w.ensureEvidenceTask(ctx, c.Record, getFile, decided); err != nil {
		return "retry", retry(retryTransient, err)
	}
	return outcome, nil
}

// ensureEvidenceTask enqueues the evidence task while evidence is pending;
// one already queued counts as success. The delay counts from the
// decision, so the fetch never runs earlier than the evidence delay after
// it, and a late duplicate does not push it back.
func (w *Worker) ensureEvidenceTask(ctx context.Context, rec *orderstore.Record, getFile tasks.GetFile, decided time.Time) error {
	if rec.Evidence.Status != orderstore.EvidencePending {
		return nil
	}
	if getFile == tasks.GetFileNone {
		getFile = tasks.GetFileBoth // a duplicate asking for less cannot cancel what the first asked for
	}
	_, err := tasks.EnqueueEvidence(ctx, w.client, tasks.FetchEvidence{
		AppID: rec.AppID, OrderNo: rec.OrderNo, GetFile: getFile, DecidedAt: decided,
	}, decided.Add(w.cfg.EvidenceDelay), tasks.Headers(tracing.Inject(ctx)))
	return err
}

// decidedAt returns when a stored record was decided, rounded up: the
// record keeps whole seconds.
func decidedAt(rec *orderstore.Record, now time.Time) time.Time {
	t, err := time.Parse(time.RFC3339, rec.DecidedAt)
	if err != nil {
		return now
	}
	return t.Add(time.Second)
}

// answerLabel names a provider answer class for metrics.
func answerLabel(c idasc.Class) string {
	switch c {
	case idasc.ClassNone:
		return "passed"
	case idasc.ClassFailed:
		return "failed"
	}
	return c.String()
}

// providerCodeMsg is the msg of a provider_refused or provider_request
// record: "provider code {code}: {provider's msg}", as partners parse it.
func providerCodeMsg(err error) string {
	var e *idasc.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	return "provider code " + e.Code + ": " + e.Msg
}

// errorStatus describes an HTTP 4xx error without any request detail.
func errorStatus(err error) string {
	var e *idasc.Error
	if errors.As(err, &e) && e.HTTPStatus != 0 {
		return fmt.Sprintf("HTTP %d", e.HTTPStatus)
	}
	return "an HTTP 4xx error"
}

// resultKey is the asynq task hash that holds the task's result (asynq
// v0.26's key layout, which redisconn.TaskKey follows and a test there
// pins), or "" for a task run without asynq's result writer.
func resultKey(ctx context.Context, t *asynq.Task) string {
	id, ok1 := asynq.GetTaskID(ctx)
	queue, ok2 := asynq.GetQueueName(ctx)
	if t.ResultWriter() == nil || !ok1 || !ok2 {
		return ""
	}
	return redisconn.TaskKey(queue, id)
}
