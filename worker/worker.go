// Package worker runs facesync's asynq handlers: it takes the decision on an
// order from the provider, records it, and a second later streams the
// evidence into storage. It is the only package that knows the whole flow.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/tracing"
	"github.com/facesync/facesync/worker/webhook"
)

// Provider is what the worker calls of the provider client (*idasc.Client).
type Provider interface {
	Sync(ctx context.Context, req idasc.SyncRequest) (*idasc.Result, error)
	SyncEvidence(ctx context.Context, req idasc.SyncRequest, getFile string, maxBytes int64, fn func(kind string, r io.Reader) error) (*idasc.Result, error)
}

// Tickets is what the worker needs of the shared ticket cache
// (*ticketcache.Cache).
type Tickets interface {
	Get(ctx context.Context, appID string) (ticketcache.Ticket, error)
	Reject(ctx context.Context, appID string, generation int64) error
}

// Config is the worker's configuration; zero values take the documented
// defaults (the Default* constants).
type Config struct {
	Apps                []string      // configured app ids; others get status error unknown_app
	Concurrency         int           // decision tasks in flight (50)
	EvidenceConcurrency int           // evidence tasks in flight (4)
	EvidenceDelay       time.Duration // delay before the evidence fetch (1s, never less)
	ShutdownTimeout     time.Duration // in-flight tasks may finish this long after Shutdown (25s)
	DecisionTTL         time.Duration // decision record lifetime (168h)
	ResultWait          time.Duration // how long 66660011 is retried (10m)
	EvidenceWait        time.Duration // how long missing photo/video is retried (5m)
	MaxEvidenceBytes    int64         // largest decoded file accepted (256 MiB)
	// WaitReplica (Redis Sentinel) makes a task count as done only once a
	// replica holds what it wrote, so a failover cannot lose a record
	// that asynq was told is complete.
	WaitReplica bool
	// PollInterval is how often an idle pod looks for new tasks and moves
	// due scheduled ones (50ms): it sets the decision latency at low load
	// and the precision of the evidence delay.
	PollInterval      time.Duration
	ReconcileInterval time.Duration // how often archived tasks are looked for (30s)
	// Webhooks are the apps' webhooks and their delivery settings
	// (FACESYNC_WEBHOOKS_FILE, FACESYNC_WEBHOOK_WAIT, ...).
	Webhooks webhook.Config
}

// Defaults of Config.
const (
	DefaultConcurrency         = 50
	DefaultEvidenceConcurrency = 4
	DefaultEvidenceDelay       = time.Second
	DefaultShutdownTimeout     = 25 * time.Second
	DefaultDecisionTTL         = orderstore.DefaultTTL
	DefaultResultWait          = 10 * time.Minute
	DefaultEvidenceWait        = 5 * time.Minute
	DefaultMaxEvidenceBytes    = 256 << 20
	DefaultPollInterval        = 50 * time.Millisecond
)

// MinPollInterval bounds how hard an idle pod may poll Redis.
const MinPollInterval = 5 * time.Millisecond

// MinEvidenceDelay is the shortest evidence delay: the provider needs about
// a second before photo and video exist.
const MinEvidenceDelay = time.Second

// ConfigError is what Validate returns: the Config field at fault and why,
// so that a caller can name its own setting for the field.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "worker: " + e.Msg }

// Validate checks c, zero values standing for the defaults.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Concurrency < 0:
		return bad("Concurrency", "concurrency %d is below 1", c.Concurrency)
	case c.EvidenceConcurrency < 0:
		return bad("EvidenceConcurrency", "evidence concurrency %d is below 1", c.EvidenceConcurrency)
	case c.EvidenceDelay != 0 && c.EvidenceDelay < MinEvidenceDelay:
		return bad("EvidenceDelay", "evidence delay %v is below %v: the provider needs about a second before photo and video exist", c.EvidenceDelay, MinEvidenceDelay)
	case c.ShutdownTimeout < 0:
		return bad("ShutdownTimeout", "negative shutdown timeout %v", c.ShutdownTimeout)
	case c.DecisionTTL != 0 && c.DecisionTTL < orderstore.MinTTL:
		return bad("DecisionTTL", "decision TTL %v is below %v", c.DecisionTTL, orderstore.MinTTL)
	case c.ResultWait < 0:
		return bad("ResultWait", "negative result wait %v", c.ResultWait)
	case c.EvidenceWait < 0:
		return bad("EvidenceWait", "negative evidence wait %v", c.EvidenceWait)
	case c.MaxEvidenceBytes < 0:
		return bad("MaxEvidenceBytes", "negative evidence size cap %d", c.MaxEvidenceBytes)
	case c.PollInterval != 0 && c.PollInterval < MinPollInterval:
		return bad("PollInterval", "poll interval %v is below %v", c.PollInterval, MinPollInterval)
	case c.ReconcileInterval < 0:
		return bad("ReconcileInterval", "negative reconcile interval %v", c.ReconcileInterval)
	}
	var we *webhook.ConfigError
	if err := c.Webhooks.Validate(); errors.As(err, &we) {
		return bad("Webhooks."+we.Field, "%s", we.Msg)
	}
	return nil
}

func (c *Config) setDefaults() error {
	if err := c.Validate(); err != nil {
		return err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.EvidenceConcurrency == 0 {
		c.EvidenceConcurrency = DefaultEvidenceConcurrency
	}
	def(&c.EvidenceDelay, DefaultEvidenceDelay)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	def(&c.DecisionTTL, DefaultDecisionTTL)
	def(&c.ResultWait, DefaultResultWait)
	def(&c.EvidenceWait, DefaultEvidenceWait)
	def(&c.ReconcileInterval, DefaultReconcileInterval)
	if c.MaxEvidenceBytes == 0 {
		c.MaxEvidenceBytes = DefaultMaxEvidenceBytes
	}
	def(&c.PollInterval, DefaultPollInterval)
	c.Webhooks = c.Webhooks.WithDefaults()
	return nil
}

// retryCheck is how often a server whose delayed tasks are only retries
// moves the due ones: the poll interval, but no more often than once a
// second. Every retry delay is a second or more and asynq keeps its time
// in whole seconds, so a retry may run up to a second after its delay;
// each look costs two scripts, forty a second per idle server at 50ms. The
// evidence queue, whose tasks are scheduled for the evidence delay, is
// looked at every poll interval.
func (c Config) retryCheck() time.Duration { return max(c.PollInterval, time.Second) }

// Deps are the worker's collaborators.
type Deps struct {
	// Redis is the one connection of the worker: decision records,
	// bookkeeping, and asynq's servers and client, which share its pool
	// (so its PoolSize must cover both concurrencies plus a margin).
	Redis      redis.UniversalClient
	Provider   Provider
	Tickets    Tickets
	Sink       storage.Sink
	Logger     *zap.Logger
	Registerer prometheus.Registerer // nil: no metrics registered
	Now        func() time.Time
	// Tracer gives every task attempt a span continuing the trace of the
	// task's headers (package tracing); nil: no spans.
	Tracer trace.TracerProvider
	// Pacer paces every provider sync call fleet-wide; every pod has one
	// on the shared Redis. nil: no pacing,
	// each task backs off on its own (for tests and comparisons).
	Pacer *pacing.Pacer
	// Confirm, with Config.WaitReplica, returns once the replicas hold
	// the writes behind keys (redisconn.Confirmer in Sentinel mode); nil:
	// redisconn.WaitReplica, one replica.
	Confirm func(ctx context.Context, keys ...string) error
	// Burst logs Redis failover errors once per burst; pass the one
	// go-redis's own logger goes through, so that a failover makes one
	// line per process. nil: one of the worker's own.
	Burst *redisconn.BurstLog
}

// Worker handles faceid:fetch_result and faceid:fetch_evidence tasks.
type Worker struct {
	cfg      Config
	apps     map[string]bool
	store    *orderstore.Store
	provider Provider
	tickets  Tickets
	sink     storage.Sink
	rdb      redis.UniversalClient // shared with asynq's servers and client
	confirm  func(ctx context.Context, keys ...string) error
	client   *asynq.Client
	log      *zap.Logger
	burst    *redisconn.BurstLog
	m        *metrics
	now      func() time.Time
	tracer   trace.TracerProvider
	pacer    *pacing.Pacer

	// base is the context every handler runs under (asynq's BaseContext
	// asks for a context, not a way to make one); Shutdown cancels it once
	// the shutdown timeout has passed.
	base         context.Context
	cancelBase   context.CancelFunc
	inflight     sync.WaitGroup
	shutdownOnce sync.Once

	decisions []*asynq.Server // the decision queue's, sharing Config.Concurrency (decisionShares)
	evidence  *asynq.Server
	rc        *reconciler // runs again what asynq archived without a handler
	hooks     *webhooks   // deliveries of queue facesync_webhook, on a server of their own
}

// New checks the configuration and builds a worker; it starts nothing.
func New(cfg Config, d Deps) (*Worker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if d.Redis == nil || d.Provider == nil || d.Tickets == nil || d.Sink == nil {
		return nil, errors.New("worker: Redis, Provider, Tickets and Sink are required")
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Burst == nil {
		d.Burst = redisconn.NewBurstLog(d.Logger.Named("redis"), 0)
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("worker: register metrics: %w", err)
	}
	confirm := d.Confirm
	if cfg.WaitReplica && confirm == nil {
		cn, ok := d.Redis.(redisconn.Conner)
		if !ok {
			return nil, errors.New("worker: WaitReplica needs Deps.Confirm or a Redis client with single connections (*redis.Client)")
		}
		confirm = func(ctx context.Context, keys ...string) error {
			return redisconn.WaitReplica(ctx, cn, replicaWait, keys...)
		}
	}
	hooks, err := newWebhooks(cfg.Webhooks, d.Registerer, d.Now)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	store, err := orderstore.New(d.Redis, orderstore.Config{TTL: cfg.DecisionTTL, EventsFunc: hooks.has})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{
		cfg:      cfg,
		apps:     make(map[string]bool, len(cfg.Apps)),
		store:    store,
		provider: d.Provider,
		tickets:  d.Tickets,
		sink:     d.Sink,
		rdb:      d.Redis,
		confirm:  confirm,
		client:   asynq.NewClientFromRedisClient(d.Redis),
		log:      d.Logger,
		burst:    d.Burst,
		m:        m,
		now:      d.Now,
		tracer:   d.Tracer,
		pacer:    d.Pacer,
		hooks:    hooks,
	}
	for _, a := range cfg.Apps {
		w.apps[a] = true
	}
	w.base, w.cancelBase = context.WithCancel(context.Background())
	w.rc = newReconciler(w, d.Redis)
	return w, nil
}

// ServeMux returns the handlers for both task types, wrapped so that
// Shutdown knows what is in flight.
func (w *Worker) ServeMux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	if w.tracer != nil {
		mux.Use(tracing.Middleware(w.tracer))
	}
	mux.HandleFunc(tasks.TypeFetchResult, w.track(w.HandleFetchResult))
	mux.HandleFunc(tasks.TypeFetchEvidence, w.track(w.HandleFetchEvidence))
	return mux
}

func (w *Worker) track(h asynq.HandlerFunc) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		w.inflight.Add(1)
		defer w.inflight.Done()
		if err := h(ctx, t); err != nil || !w.cfg.WaitReplica {
			return err
		}
		return w.waitReplica(ctx, t)
	}
}

// purgedEnd turns an attempt that met the order's purge marker (its
// error is orderstore.ErrPurged) into the archived end of the task
// (SkipRetry) with an error saying so, and the outcome "purged". The
// handlers look for the marker before any provider call or upload (see
// acquire), and the store refuses every write once it exists, so that the
// order's task stops wherever the purge finds it. Other attempts pass
// unchanged.
func purgedEnd(appID, orderNo, outcome string, err error) (string, error) {
	if !errors.Is(err, orderstore.ErrPurged) {
		return outcome, err
	}
	return "purged", fmt.Errorf("order %s:%s was purged: nothing is fetched or stored for it for %v after its purge: %w",
		appID, orderNo, orderstore.PurgeTTL, asynq.SkipRetry)
}

// replicaWait bounds the wait for a replica after a task (Deps.Confirm
// has its own); past it the task is retried, which writes nothing twice
// (the first decision wins).
const replicaWait = 2 * time.Second

// waitReplica returns nil once a replica holds what the task wrote: the
// order's record and, while its evidence is pending, the evidence task.
// asynq marks the task done only after the handler returns, so a master
// lost before replicating cannot leave a task done without its record:
// the error makes asynq run it again (on the new master, where the record
// or the evidence task is written anew).
func (w *Worker) waitReplica(ctx context.Context, t *asynq.Task) error {
	var app, order string
	evidencePending := false
	switch t.Type() {
	case tasks.TypeFetchResult:
		p, err := tasks.ParseFetchResult(t.Payload())
		if err != nil {
			return nil // archived by the handler; nothing was written
		}
		app, order = p.AppID, p.OrderNo
		rec, _, err := w.store.Get(ctx, app, order)
		if err != nil {
			return w.replicaErr(t, app, order, err)
		}
		evidencePending = rec.Evidence.Status == orderstore.EvidencePending
	case tasks.TypeFetchEvidence:
		p, err := tasks.ParseFetchEvidence(t.Payload())
		if err != nil {
			return nil
		}
		app, order = p.AppID, p.OrderNo
	default:
		return nil
	}
	keys := []string{orderstore.RecordKey(app, order)}
	if evidencePending {
		keys = append(keys, redisconn.TaskKey(tasks.QueueEvidence, tasks.TaskID(app, order)))
	}
	return w.replicaErr(t, app, order, w.confirm(ctx, keys...))
}

// replicaErr turns a failed replica wait into a retry, logged through the
// burst log (a failover makes one per task in flight).
func (w *Worker) replicaErr(t *asynq.Task, app, order string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, orderstore.ErrNoRecord) {
		err = redisconn.ErrLost
	}
	err = retry(retryTransient, fmt.Errorf("%s:%s: not yet on a replica: %w", app, order, err))
	if redisFailover(err) {
		w.burst.Error(err)
	} else {
		w.log.Warn("task done but its writes are not on the current master; running it again",
			zap.String("type", t.Type()), zap.String("app_id", app), zap.String("order_no", order), zap.Error(err))
	}
	return err
}

// Start starts the asynq servers of this process: the decision servers,
// which share the decision concurrency, and one for evidence with its own,
// so long uploads never hold decision slots and memory stays bounded by
// the evidence concurrency.
func (w *Worker) Start() error {
	type interval struct{ check, delayed time.Duration }
	mk := func(queue string, concurrency int, iv interval) *asynq.Server {
		return asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
			Concurrency: concurrency,
			Queues:      map[string]int{queue: 1},
			BaseContext: func() context.Context { return w.base },
			// asynq's defaults (1 s between looks at an empty queue, 5 s
			// between moves of due scheduled tasks) would put up to a
			// second on every decision and several on the evidence delay.
			TaskCheckInterval:        iv.check,
			DelayedTaskCheckInterval: iv.delayed,
			RetryDelayFunc:           RetryDelay,
			IsFailure:                IsFailure,
			ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
			// Longer than ours: handlers are cancelled through BaseContext
			// first and go back to their queue as retries.
			ShutdownTimeout: w.cfg.ShutdownTimeout + 5*time.Second,
			// A failover makes asynq log once per task and per poll:
			// those lines join the burst log.
			Logger:   w.burst.AsynqLogger(asynqLogger{w.log.Sugar().With("component", "asynq")}),
			LogLevel: asynq.WarnLevel,
		})
	}
	shares := decisionShares(w.cfg.Concurrency)
	w.decisions = make([]*asynq.Server, len(shares))
	for i, n := range shares {
		// The first server alone looks at an idle queue every poll
		// interval; the others only add dequeues under load and look
		// twice a second while idle (never more often than the first),
		// so an idle pod costs little more than one server.
		iv := interval{w.cfg.PollInterval, w.cfg.retryCheck()}
		if i > 0 {
			iv = interval{max(extraCheck, w.cfg.PollInterval), max(extraDelayedCheck, w.cfg.retryCheck())}
		}
		w.decisions[i] = mk(tasks.QueueResult, n, iv)
	}
	w.evidence = mk(tasks.QueueEvidence, w.cfg.EvidenceConcurrency, interval{w.cfg.PollInterval, w.cfg.PollInterval})
	mux := w.ServeMux()
	var started []*asynq.Server
	fail := func(err error) error {
		for _, srv := range started {
			srv.Shutdown()
		}
		return err
	}
	for _, srv := range w.decisions {
		if err := srv.Start(mux); err != nil {
			return fail(fmt.Errorf("start decision server: %w", err))
		}
		started = append(started, srv)
	}
	if err := w.evidence.Start(mux); err != nil {
		return fail(fmt.Errorf("start evidence server: %w", err))
	}
	started = append(started, w.evidence)
	if err := w.startWebhooks(); err != nil {
		return fail(err)
	}
	w.rc.start()
	return nil
}

// slotsPerDecisionServer and maxDecisionServers size the decision servers.
// An asynq server takes its tasks one dequeue round trip at a time, so a
// pod with one server takes at most one task per Redis round trip however
// many slots it has: on two cores with the provider answering at once
// that held a pod of 50 slots to about 1,900 orders/s, and a Redis one
// millisecond away would hold it to 1,000. Several servers sharing the
// slots dequeue side by side.
const (
	slotsPerDecisionServer = 12
	maxDecisionServers     = 8
)

// Idle intervals of the decision servers after the first. A server that
// sleeps on an empty queue finishes its sleep before it stops, so the
// check also bounds how long an idle pod takes to shut down (about 1.5 ×
// the check).
const (
	extraCheck        = 500 * time.Millisecond
	extraDelayedCheck = 5 * time.Second
)

// decisionShares splits the decision concurrency among the decision
// servers: one per slotsPerDecisionServer slots (rounded up), at most
// maxDecisionServers, the first taking what does not divide evenly.
func decisionShares(concurrency int) []int {
	n := min(max((concurrency+slotsPerDecisionServer-1)/slotsPerDecisionServer, 1), maxDecisionServers)
	shares := make([]int, n)
	for i := range shares {
		shares[i] = concurrency / n
	}
	shares[0] += concurrency % n
	return shares
}

// Shutdown stops taking tasks, lets in-flight ones finish for the shutdown
// timeout, then cancels the rest, which asynq puts back as retries. It is
// safe to call more than once, and on a worker that never started.
func (w *Worker) Shutdown() {
	w.shutdownOnce.Do(w.shutdown)
}

// cleanupGrace is how long cancelled handlers get to clean up (abort a
// multipart upload) before the process may exit: asynq itself does not wait
// for a handler once its context is cancelled.
const cleanupGrace = 5 * time.Second

func (w *Worker) shutdown() {
	w.rc.shutdown()
	defer w.stopWebhooks()() // beside the other servers, waited for at the end
	if w.decisions != nil {
		deadline := time.Now().Add(w.cfg.ShutdownTimeout)
		servers := append([]*asynq.Server{w.evidence}, w.decisions...)
		// Stop and Shutdown each block while a processor sleeps on an
		// empty queue: each runs on all servers at once, on a clock that
		// already runs.
		all := func(f func(*asynq.Server)) {
			var wg sync.WaitGroup
			for _, srv := range servers {
				wg.Go(func() { f(srv) })
			}
			wg.Wait()
		}
		all((*asynq.Server).Stop)
		done := make(chan struct{})
		go func() { w.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			w.log.Warn("shutdown timeout: cancelling in-flight tasks", zap.Duration("timeout", w.cfg.ShutdownTimeout))
			w.cancelBase()
			select {
			case <-done:
			case <-time.After(cleanupGrace):
				w.log.Warn("cancelled tasks did not return in time", zap.Duration("grace", cleanupGrace))
			}
		}
		w.cancelBase()
		all((*asynq.Server).Shutdown)
	}
	w.cancelBase()
	// The client shares Deps.Redis, which its owner closes: asynq's Close
	// would only say so.
}

// handleError counts failed attempts; finish has logged them already.
func (w *Worker) handleError(_ context.Context, t *asynq.Task, _ error) {
	w.m.taskErrors.WithLabelValues(t.Type()).Inc()
}

// asynqLogger routes asynq's own logs through zap.
type asynqLogger struct{ s *zap.SugaredLogger }

func (l asynqLogger) Debug(args ...any) { l.s.Debug(args...) }
func (l asynqLogger) Info(args ...any)  { l.s.Info(args...) }
func (l asynqLogger) Warn(args ...any)  { l.s.Warn(args...) }
func (l asynqLogger) Error(args ...any) { l.s.Error(args...) }
func (l asynqLogger) Fatal(args ...any) { l.s.Error(args...) } // never exit the process from a library

// taskLog returns a logger with the task's identity.
func (w *Worker) taskLog(ctx context.Context, t *asynq.Task, appID, orderNo string) *zap.Logger {
	id, _ := asynq.GetTaskID(ctx)
	n, _ := asynq.GetRetryCount(ctx)
	// Lazy: the fields are encoded only when a line is written, not on
	// every task at a level that logs nothing.
	return w.log.WithLazy(zap.String("type", t.Type()), zap.String("app_id", appID), zap.String("order_no", orderNo),
		zap.String("task_id", id), zap.Int("attempt", n+1))
}

// finish logs and counts one attempt's outcome.
func (w *Worker) finish(log *zap.Logger, t *asynq.Task, start time.Time, outcome string, err error) {
	d := w.now().Sub(start)
	w.m.tasks.WithLabelValues(t.Type(), outcome).Inc()
	w.m.taskDuration.WithLabelValues(t.Type()).Observe(d.Seconds())
	// An attempt that ends well is a debug line: the record, the metrics
	// and the webhook say it, and a line per order would be most of a
	// busy pod's log. One that ends an order as an error is worth info.
	lvl := zap.DebugLevel
	if outcome == orderstore.StatusError {
		lvl = zap.InfoLevel
	}
	if err != nil {
		var re *retryError
		switch {
		case errors.As(err, &re) && (re.kind == retryNotReady || re.kind == retryThrottled):
			lvl = zap.DebugLevel // waiting for the provider is normal
		case redisFailover(err):
			// Every task in flight fails alike while Redis fails over:
			// one line per burst, the attempts at debug.
			w.burst.Error(err)
			lvl = zap.DebugLevel
		default:
			lvl = zap.WarnLevel
		}
	} else {
		w.burst.OK()
	}
	if ce := log.Check(lvl, "task attempt done"); ce != nil {
		ce.Write(zap.String("outcome", outcome), zap.Duration("duration", d), zap.Error(err))
	}
}

// writeResult stores a record's JSON as the task's asynq result.
func writeResult(t *asynq.Task, raw []byte, log *zap.Logger) {
	if t.ResultWriter() == nil {
		return
	}
	if _, err := t.ResultWriter().Write(raw); err != nil {
		log.Warn("could not write task result", zap.Error(err))
	}
}
