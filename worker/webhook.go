package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/tracing"
	"github.com/facesync/facesync/worker/webhook"
)

// webhooks is the worker's part of webhook delivery: the apps
// with a webhook, the sender and the asynq server of queue
// facesync_webhook, whose own small concurrency (webhook.Config's, 4 by
// default) keeps slow receivers from holding decision or evidence slots.
type webhooks struct {
	cfg       webhook.Config
	endpoints map[string]webhook.Endpoint
	sender    *webhook.Sender
	m         *webhook.Metrics
	srv       *asynq.Server
}

func newWebhooks(cfg webhook.Config, reg prometheus.Registerer, now func() time.Time) (*webhooks, error) {
	m, err := webhook.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register webhook metrics: %w", err)
	}
	h := &webhooks{cfg: cfg, endpoints: map[string]webhook.Endpoint{}, m: m, sender: webhook.NewSender(cfg.Timeout, m, now)}
	for _, e := range cfg.Endpoints {
		h.endpoints[e.AppID] = e
	}
	return h, nil
}

// has reports whether app has a webhook: the order store marks its events
// due.
func (h *webhooks) has(appID string) bool {
	_, ok := h.endpoints[appID]
	return ok
}

// dueSweepBatch is how many due events one read of the due set returns.
const dueSweepBatch = 500

// EnqueueDueEvents enqueues the delivery task of every event marked due at
// or before before whose task is not confirmed queued: what a crash
// between an order's transition and its enqueue left behind. The
// reconciler's pass calls it; it returns how many events it handed on (a
// task queued, or found queued already).
func (w *Worker) EnqueueDueEvents(ctx context.Context, before time.Time) (int, error) {
	n := 0
	var errs []error
	seen := map[string]bool{}
	for {
		due, err := w.store.DueOrders(ctx, before, dueSweepBatch)
		if err != nil {
			return n, err
		}
		progress := false
		for _, d := range due {
			id := tasks.WebhookID(d.AppID, d.OrderNo, d.Event)
			if seen[id] {
				continue // still there: its enqueue failed in this pass
			}
			seen[id] = true
			progress = true
			k, err := w.enqueueEvents(ctx, d.AppID, d.OrderNo, d.DueAt, d.Event)
			n += k
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(due) < dueSweepBatch || !progress {
			break
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("enqueue due webhook events: %d failed, the first: %w", len(errs), errs[0])
	}
	return n, nil
}

// enqueueDueEvents enqueues the delivery of the order's due events right
// after the store write that made them due. Best effort: a failure is
// logged, and the due set keeps the event for EnqueueDueEvents.
func (w *Worker) enqueueDueEvents(ctx context.Context, appID, orderNo string, log *zap.Logger) {
	if !w.hooks.has(appID) {
		return
	}
	if _, err := w.enqueueEvents(ctx, appID, orderNo, w.now()); err != nil {
		log.Warn("could not enqueue the webhook delivery; the reconciler will", zap.Error(err))
	}
}

// enqueueEvents enqueues the deliveries of the order's due events (only
// those named, when any are) and takes each off the due set once its task
// is queued. Events that are not due (delivered, or their state gone) are
// only taken off the due set.
func (w *Worker) enqueueEvents(ctx context.Context, appID, orderNo string, since time.Time, only ...string) (int, error) {
	// A purge under way (its marker set, its state not yet deleted) must
	// not get a delivery task queued after it deleted the order's tasks.
	purged, err := w.store.Purged(ctx, appID, orderNo)
	if err != nil {
		return 0, err
	}
	if purged {
		for _, name := range []string{orderstore.EventDecision, orderstore.EventEvidence} {
			if err := w.store.EventQueued(ctx, appID, orderNo, name); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	ev, err := w.store.DueEvents(ctx, appID, orderNo)
	if err != nil {
		return 0, err
	}
	names := only
	if len(names) == 0 {
		names = []string{orderstore.EventDecision, orderstore.EventEvidence}
	}
	n := 0
	for _, name := range names {
		if _, due := ev.Due[name]; due {
			_, err := tasks.EnqueueWebhook(ctx, w.client, tasks.DeliverWebhook{AppID: appID, OrderNo: orderNo, Event: name, Since: since}, tasks.Headers(tracing.Inject(ctx)))
			if err != nil {
				return n, err
			}
			n++
		} else if len(only) == 0 {
			continue // not swept for: nothing to take off
		}
		if err := w.store.EventQueued(ctx, appID, orderNo, name); err != nil {
			return n, err
		}
	}
	return n, nil
}

// HandleDeliverWebhook handles faceid:deliver_webhook: it POSTs the
// event's body, as stored when the event became due, to the app's webhook,
// signed afresh. A 2xx marks the event delivered; anything else is retried
// with capped backoff until the webhook wait has passed since the event,
// then archived with the last error.
func (w *Worker) HandleDeliverWebhook(ctx context.Context, t *asynq.Task) error {
	start := w.now()
	p, err := tasks.ParseDeliverWebhook(t.Payload())
	if err != nil {
		return w.invalidPayload(t, err)
	}
	log := w.taskLog(ctx, t, p.AppID, p.OrderNo).With(zap.String("event", p.Event))
	outcome, err := w.deliver(ctx, p, log)
	w.hooks.m.Count(p.Event, outcome) // a purged order's delivery counts as dropped
	outcome, err = purgedEnd(p.AppID, p.OrderNo, outcome, err)
	w.finish(log, t, start, outcome, err)
	return err
}

func (w *Worker) deliver(ctx context.Context, p tasks.DeliverWebhook, log *zap.Logger) (string, error) {
	ep, ok := w.hooks.endpoints[p.AppID]
	if !ok {
		return webhook.OutcomeDropped, fmt.Errorf("app %s has no webhook (FACESYNC_WEBHOOKS_FILE): %w", p.AppID, asynq.SkipRetry)
	}
	// A purge under way has set the marker before it deletes the order's
	// state: nothing more is sent for the order from then on.
	switch purged, err := w.store.Purged(ctx, p.AppID, p.OrderNo); {
	case err != nil:
		return webhook.OutcomeFailed, err
	case purged:
		return webhook.OutcomeDropped, orderstore.ErrPurged
	}
	ev, err := w.store.DueEvents(ctx, p.AppID, p.OrderNo)
	if err != nil {
		return webhook.OutcomeFailed, err
	}
	rec, due := ev.Due[p.Event]
	switch {
	case ev.Delivered[p.Event]:
		return webhook.OutcomeDuplicate, nil
	case !due:
		return webhook.OutcomeDropped, fmt.Errorf("order %s:%s has no due %s event (its state expired or was purged): %w", p.AppID, p.OrderNo, p.Event, asynq.SkipRetry)
	}
	id := tasks.WebhookID(p.AppID, p.OrderNo, p.Event)
	body, err := webhook.NewBody(id, p.Event, rec)
	if err != nil {
		return webhook.OutcomeDropped, fmt.Errorf("%v: %w", err, asynq.SkipRetry)
	}
	a, err := w.hooks.sender.Send(ctx, ep, id, p.Event, body)
	log.Debug("webhook sent", zap.Int("http_status", a.Status), zap.Duration("request_duration", a.Duration), zap.Bool("delivered", a.Delivered))
	if err == nil {
		if _, merr := w.store.MarkDelivered(ctx, p.AppID, p.OrderNo, p.Event); merr != nil {
			// Sent again on the retry: receivers drop a delivery id they saw.
			return webhook.OutcomeFailed, fmt.Errorf("webhook delivered, but not recorded: %w", merr)
		}
		if !p.Since.IsZero() {
			w.hooks.m.Delivered(w.now().Sub(p.Since))
		}
		return webhook.OutcomeDelivered, nil
	}
	if ctx.Err() != nil {
		return webhook.OutcomeFailed, err // a shutdown: back to the queue
	}
	if since := p.Since; !since.IsZero() && !w.now().Before(since.Add(w.hooks.cfg.Wait)) || lastAttempt(ctx) {
		return webhook.OutcomeArchived, fmt.Errorf("webhook not delivered within %v (facesync requeue --webhooks runs it again): %v: %w", w.hooks.cfg.Wait, err, asynq.SkipRetry)
	}
	return webhook.OutcomeFailed, err
}

// webhookRetryDelay is the webhook server's RetryDelayFunc: the delivery's
// own schedule (webhook.Config.RetryDelay), or promptly after a crash or a
// shutdown.
func (w *Worker) webhookRetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if errors.Is(err, asynq.ErrLeaseExpired) || errors.Is(err, context.Canceled) {
		return promptDelay
	}
	p, _ := tasks.ParseDeliverWebhook(t.Payload())
	now := w.now()
	d := w.hooks.cfg.RetryDelay(n, p.Since, now)
	// asynq keeps a retry's time in whole seconds, truncated: round up, so
	// the retry never runs before its delay.
	if at := now.Add(d); at.Truncate(time.Second) != at {
		d = at.Truncate(time.Second).Add(time.Second).Sub(now)
	}
	return d
}

// startWebhooks starts the server of queue facesync_webhook, when any app
// has a webhook.
func (w *Worker) startWebhooks() error {
	if len(w.hooks.endpoints) == 0 {
		return nil
	}
	w.hooks.srv = asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
		Concurrency:              w.hooks.cfg.Concurrency,
		Queues:                   map[string]int{tasks.QueueWebhook: 1},
		BaseContext:              func() context.Context { return w.base },
		TaskCheckInterval:        w.cfg.PollInterval,
		DelayedTaskCheckInterval: w.cfg.retryCheck(),
		RetryDelayFunc:           w.webhookRetryDelay,
		IsFailure:                IsFailure,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		// An attempt takes at most the webhook timeout.
		ShutdownTimeout: w.hooks.cfg.Timeout + 5*time.Second,
		Logger:          w.burst.AsynqLogger(asynqLogger{w.log.Sugar().With("component", "asynq")}),
		LogLevel:        asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	if w.tracer != nil {
		mux.Use(tracing.Middleware(w.tracer))
	}
	mux.HandleFunc(tasks.TypeDeliverWebhook, w.track(w.HandleDeliverWebhook))
	if err := w.hooks.srv.Start(mux); err != nil {
		return fmt.Errorf("start webhook server: %w", err)
	}
	return nil
}

// stopWebhooks starts stopping the webhook server and returns a function
// that waits until it has: it runs beside the other servers' shutdown.
func (w *Worker) stopWebhooks() (wait func()) {
	if w.hooks.srv == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() { defer close(done); w.hooks.srv.Shutdown() }()
	return func() { <-done }
}

// WebhookRequeue is one archived delivery an operator ran again.
type WebhookRequeue struct {
	ID                    string // the delivery id, {app_id}:{order_no}:{event}
	AppID, OrderNo, Event string
	Ran                   bool   // false: left as it was, Reason says why
	Reason                string // why it was left
}

// RequeueWebhooks runs every archived webhook delivery (of appID, when not
// empty) again now with a fresh wait (facesync requeue --webhooks): the
// archived task is deleted and its successor enqueued with the same task
// ID. A delivery whose event was delivered meanwhile, or whose order's
// state is gone, is left archived. fn is called for each; it returns how
// many ran again.
func RequeueWebhooks(ctx context.Context, rdb redis.UniversalClient, appID string, now time.Time, fn func(WebhookRequeue)) (int, error) {
	store, err := orderstore.New(rdb, orderstore.Config{})
	if err != nil {
		return 0, err
	}
	// Both share rdb, which the caller closes.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	n := 0
	// Deleting shifts the archive's pages: read the first page again
	// until it holds nothing left to run.
	skipped := map[string]bool{}
	for page := 1; ; {
		infos, err := insp.ListArchivedTasks(tasks.QueueWebhook, asynq.PageSize(100), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("list archived webhook deliveries: %w", err)
		}
		if len(infos) == 0 {
			return n, nil
		}
		ran := 0
		for _, info := range infos {
			if skipped[info.ID] {
				continue
			}
			p, perr := tasks.ParseDeliverWebhook(info.Payload)
			if info.Type != tasks.TypeDeliverWebhook || perr != nil || (appID != "" && p.AppID != appID) {
				skipped[info.ID] = true
				continue
			}
			r := WebhookRequeue{ID: info.ID, AppID: p.AppID, OrderNo: p.OrderNo, Event: p.Event}
			ev, err := store.DueEvents(ctx, p.AppID, p.OrderNo)
			if err != nil {
				return n, err
			}
			if _, due := ev.Due[p.Event]; !due {
				r.Reason = "the event is not due: delivered, or the order's state expired or was purged"
				skipped[info.ID] = true
				fn(r)
				continue
			}
			if err := insp.DeleteTask(tasks.QueueWebhook, info.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return n, fmt.Errorf("delete archived delivery %s: %w", info.ID, err)
			}
			p.Since = now
			if _, err := tasks.EnqueueWebhook(ctx, client, p); err != nil {
				return n, err
			}
			r.Ran = true
			n++
			ran++
			fn(r)
		}
		if ran == 0 {
			page++ // this page holds only what stays archived
		}
	}
}
