package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/facesync/facesync/cmd/facesync/audit"
	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/queuemetrics"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/tracing"
)

func (m *Main) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	return fs
}

func (m *Main) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func (m *Main) config() (*Config, error) {
	c, err := LoadConfig(m.Getenv)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return c, nil
}

// configSink is config and the object store it names, for the commands
// that work on evidence.
func (m *Main) configSink(ctx context.Context) (*Config, *storage.S3, error) {
	c, err := m.config()
	if err != nil {
		return nil, nil, err
	}
	sink, err := newSink(ctx, c)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	return c, sink, nil
}

// runWorker runs a worker pod until ctx ends (SIGTERM, SIGINT).
func (m *Main) runWorker(ctx context.Context, args []string) error {
	if err := m.parse(m.flags("worker"), args); err != nil {
		return err
	}
	c, err := m.config()
	if err != nil {
		return err
	}
	if err := c.requireWorker(); err != nil {
		return usageErr("%v", err)
	}
	log, err := newLogger(c, m)
	if err != nil {
		return usageErr("%v", err)
	}
	defer func() { _ = log.Sync() }()
	return m.serveWorker(ctx, c, log, nil)
}

// serveWorker wires and runs the worker; demo passes the provider's HTTP
// client and the S3 sink it built.
func (m *Main) serveWorker(ctx context.Context, c *Config, log *zap.Logger, sink storage.Sink) error {
	rdb, err := connectRedis(ctx, c)
	if err != nil {
		return err
	}
	defer rdb.Close() // after the worker's shutdown (defers run last first): asynq shares it
	// One burst log for the process: go-redis's lines, asynq's and the
	// worker's join the same burst.
	burst := redisconn.NewBurstLog(log.Named("redis"), 0)
	routeLibraryLogs(log, burst)
	tp, stopTracing, err := m.tracer(ctx, "facesync-worker")
	if err != nil {
		return err
	}
	defer stopTracing()
	if sink == nil {
		s3sink, err := newSink(ctx, c)
		if err != nil {
			return usageErr("%v", err)
		}
		sink = s3sink
	}
	if err := pingSink(ctx, sink); err != nil {
		return infraErr(err)
	}
	// On the sink itself: the tracing wrapper hides the S3 sink's reads.
	if err := checkRetentionLock(ctx, c, sink); err != nil {
		return err
	}
	if tp != nil {
		rdb.AddHook(tracing.RedisHook(tp))
		sink = tracing.Sink(sink, tp)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(queuemetrics.New(rdb, queuemetrics.Options{}))

	confirm, closeConfirm := confirmer(c, rdb, 2*time.Second)
	defer closeConfirm()
	provider := idasc.New(c.IdascURL, idascOptions(tp)...)
	tickets, err := newTicketCache(rdb, c, provider, log, reg, confirm)
	if err != nil {
		return usageErr("%v", err)
	}
	defer tickets.Close()
	apps := make([]string, 0, len(c.Apps))
	for id := range c.Apps {
		apps = append(apps, id)
	}
	if c.TicketSource == "own" {
		// Keep the shared entry fresh without traffic too: partners read
		// the access token from it.
		mctx, stopMaintain := context.WithCancel(ctx)
		defer stopMaintain()
		go tickets.Maintain(mctx, apps, 30*time.Second)
	}
	pacer, err := pacing.New(rdb, c.pacingConfig())
	if err != nil {
		return usageErr("%v", &configError{"FACESYNC_PROVIDER_RATE", err.Error()})
	}
	w, err := worker.New(c.workerConfig(apps), worker.Deps{Redis: rdb, Provider: provider, Tickets: tickets, Sink: sink, Logger: log, Registerer: reg,
		Tracer: tp, Pacer: pacer, Confirm: confirm, Burst: burst})
	if err != nil {
		return usageErr("%v", err)
	}
	defer w.Shutdown()

	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return infraErr(fmt.Errorf("listen on FACESYNC_HTTP_ADDR %s: %v", c.HTTPAddr, err))
	}
	srv := &http.Server{Handler: opsHandler(reg, rdb, sink), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	if err := w.Start(); err != nil {
		return infraErr(err)
	}
	m.mu.Lock()
	m.httpAddr = ln.Addr().String()
	m.mu.Unlock()
	m.markReady()
	log.Info("worker started", zap.String("http_addr", ln.Addr().String()), zap.Int("apps", len(apps)),
		zap.Int("concurrency", c.Concurrency), zap.Int("evidence_concurrency", c.EvidenceConcurrency),
		zap.String("ticket_source", c.TicketSource), zap.Int("provider_rate", c.ProviderRate))

	<-ctx.Done()
	log.Info("shutting down", zap.Duration("timeout", c.ShutdownTimeout))
	w.Shutdown()
	log.Info("worker stopped")
	return nil
}

// newTicketCache hands the ticket cache the provider client's two calls;
// the app secret stays in this closure and is never stored.
func newTicketCache(rdb redis.UniversalClient, c *Config, p *idasc.Client, log *zap.Logger, reg prometheus.Registerer,
	confirm func(ctx context.Context, keys ...string) error) (*ticketcache.Cache, error) {
	src, err := ticketcache.ParseSource(c.TicketSource)
	if err != nil {
		return nil, &configError{"FACESYNC_TICKET_SOURCE", err.Error()}
	}
	opts := ticketcache.Options{Source: src, MaxAge: c.TicketMaxAge, Logger: log, Registerer: reg, Final: finalProviderError}
	// In Sentinel mode a refresh lock must be on the replicas before
	// anything is minted, so that a failover cannot hand it to a second
	// pod (nil otherwise).
	opts.ConfirmFunc = confirm
	if src == ticketcache.Own {
		opts.FetchToken = func(ctx context.Context, appID string) (ticketcache.Credential, error) {
			secret, ok := c.Apps[appID]
			if !ok {
				return ticketcache.Credential{}, fmt.Errorf("app %s is not configured", appID)
			}
			cr, err := p.AccessToken(ctx, appID, secret)
			return ticketcache.Credential{Value: cr.Value, ExpiresIn: cr.ExpiresIn}, err
		}
		opts.FetchTicket = func(ctx context.Context, appID, token string) (ticketcache.Credential, error) {
			cr, err := p.SignTicket(ctx, appID, token)
			return ticketcache.Credential{Value: cr.Value, ExpiresIn: cr.ExpiresIn}, err
		}
	}
	return ticketcache.New(rdb, opts)
}

// finalProviderError tells the ticket cache which provider answers no
// retry mends: the app's account refused, or the request itself;
// throttled and transient answers are retried.
func finalProviderError(err error) bool { return idasc.IsRefused(err) || idasc.IsBadRequest(err) }

// opsHandler serves /metrics, /healthz and /readyz.
func opsHandler(reg *prometheus.Registry, rdb redis.UniversalClient, sink storage.Sink) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		// A writable master, not just an answer: during a failover the
		// old master or a replica answers but refuses writes.
		if err := redisconn.Ready(ctx, rdb); err != nil {
			http.Error(w, "redis: no writable master", http.StatusServiceUnavailable)
			return
		}
		if err := sink.Ping(ctx); err != nil {
			http.Error(w, "evidence bucket unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// orderFlags are the --app-id and --order-no flags.
func orderFlags(fs *flag.FlagSet) (appID, orderNo *string) {
	return fs.String("app-id", "", "app id"), fs.String("order-no", "", "order number")
}

// orderCommand parses the flags of a command about one order (status,
// verify) and loads the configuration.
func (m *Main) orderCommand(name string, args []string) (appID, orderNo string, c *Config, err error) {
	fs := m.flags(name)
	a, o := orderFlags(fs)
	if err := m.parse(fs, args); err != nil {
		return "", "", nil, err
	}
	if !tasks.ValidID(*a) || !tasks.ValidID(*o) {
		return "", "", nil, usageErr("--app-id and --order-no are required: 1 to 32 characters of A-Z a-z 0-9 _ -")
	}
	c, err = m.config()
	return *a, *o, c, err
}

// runEnqueue enqueues one order, or one per line of --file.
func (m *Main) runEnqueue(ctx context.Context, args []string) error {
	fs := m.flags("enqueue")
	appID, orderNo := orderFlags(fs)
	getFile := fs.String("get-file", "1", `evidence to fetch: "1" photo and video, "2" photo, "3" video, "0" none`)
	file := fs.String("file", "", "file with one app_id,order_no[,get_file] per line")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	var orders []tasks.FetchResult
	var bad int
	if *file != "" {
		if *appID != "" || *orderNo != "" {
			return usageErr("use --file or --app-id/--order-no, not both")
		}
		var err error
		if orders, bad, err = m.readOrders(*file); err != nil {
			return usageErr("%v", err)
		}
	} else {
		p := tasks.FetchResult{AppID: *appID, OrderNo: *orderNo, GetFile: tasks.GetFile(*getFile)}
		if err := p.Validate(); err != nil {
			return usageErr("%v", err)
		}
		orders = append(orders, p)
	}
	c, rdb, err := m.redisConfig(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// Shares rdb, which the defer above closes.
	client := asynq.NewClientFromRedisClient(rdb)
	confirm, closeConfirm := confirmer(c, rdb, time.Second)
	defer closeConfirm()
	var queued, dups int
	for _, p := range orders {
		dup, err := enqueueConfirmed(ctx, client, confirm, p)
		if err != nil {
			return infraErr(fmt.Errorf("%s:%s: %v (%d enqueued before it)", p.AppID, p.OrderNo, err, queued+dups))
		}
		if dup {
			dups++
			fmt.Fprintf(m.Stdout, "already queued %s:%s\n", p.AppID, p.OrderNo)
		} else {
			queued++
			fmt.Fprintf(m.Stdout, "enqueued %s:%s\n", p.AppID, p.OrderNo)
		}
	}
	if *file != "" {
		fmt.Fprintf(m.Stdout, "%d enqueued, %d already queued, %d bad lines\n", queued, dups, bad)
	}
	if bad > 0 {
		return usageErr("%d bad lines in %s (reported above; the other orders were enqueued)", bad, *file)
	}
	return nil
}

// confirmer returns, in Sentinel mode, the function that waits until the
// replicas hold a write (redisconn.Confirmer, bounded by timeout), and its
// closer; nil and a no-op for a single node.
func confirmer(c *Config, rdb *redis.Client, timeout time.Duration) (func(ctx context.Context, keys ...string) error, func()) {
	if !c.redis.Sentinel() {
		return nil, func() {}
	}
	k := c.redis.NewConfirmer(rdb)
	return func(ctx context.Context, keys ...string) error {
		return k.Confirm(ctx, timeout, keys...)
	}, func() { _ = k.Close() }
}

// enqueueAttempts bounds how often an order is enqueued again after a
// failover lost it.
const enqueueAttempts = 3

// enqueueConfirmed enqueues p; in Sentinel mode it returns only once a
// replica holds the task (WAIT 1), since a master lost before replicating
// takes an acknowledged enqueue with it. A task that is not on the current
// master (lost that way) is enqueued again, a few times. An error means the
// order is not confirmed: not replicated in time, or Redis failing over.
func enqueueConfirmed(ctx context.Context, client tasks.Enqueuer, confirm func(ctx context.Context, keys ...string) error, p tasks.FetchResult) (dup bool, err error) {
	for attempt := 1; ; attempt++ {
		dup, err = tasks.Enqueue(ctx, client, p)
		if err != nil || confirm == nil {
			return dup, err
		}
		err = confirm(ctx, redisconn.TaskKey(tasks.QueueResult, tasks.TaskID(p.AppID, p.OrderNo)))
		switch {
		case err == nil:
			return dup, nil
		case errors.Is(err, redisconn.ErrLost) && attempt < enqueueAttempts:
			continue
		case errors.Is(err, redisconn.ErrLost):
			return dup, fmt.Errorf("lost in a Redis failover %d times, not enqueued: %w", attempt, err)
		}
		return dup, fmt.Errorf("not confirmed by a Redis replica (failing over?), so not reported as enqueued: %w", err)
	}
}

// readOrders reads app_id,order_no[,get_file] lines, reporting each bad
// one on stderr; blank lines and # comments are skipped.
func (m *Main) readOrders(path string) ([]tasks.FetchResult, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []tasks.FetchResult
	bad := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		if len(parts) < 2 || len(parts) > 3 {
			fmt.Fprintf(m.Stderr, "%s:%d: want app_id,order_no[,get_file]\n", path, n)
			bad++
			continue
		}
		p := tasks.FetchResult{AppID: parts[0], OrderNo: parts[1]}
		if len(parts) == 3 {
			p.GetFile = tasks.GetFile(parts[2])
		}
		if err := p.Validate(); err != nil {
			fmt.Fprintf(m.Stderr, "%s:%d: %v\n", path, n, err)
			bad++
			continue
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	return out, bad, nil
}

// runStatus prints an order's decision record.
func (m *Main) runStatus(ctx context.Context, args []string) error {
	appID, orderNo, c, err := m.orderCommand("status", args)
	if err != nil {
		return err
	}
	rdb, store, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, b, err := store.Get(ctx, appID, orderNo)
	if errors.Is(err, orderstore.ErrNoRecord) {
		return noErr("no decision record for %s:%s", appID, orderNo)
	}
	if err != nil {
		return infraErr(fmt.Errorf("read the decision record: %v", err))
	}
	var pretty json.RawMessage = b
	out, err := json.MarshalIndent(pretty, "", "  ")
	if err != nil {
		out = b
	}
	fmt.Fprintf(m.Stdout, "%s\n", out)
	return nil
}

// runVerify re-reads an order's stored evidence and checks it against the
// manifest.
func (m *Main) runVerify(ctx context.Context, args []string) error {
	fs := m.flags("verify")
	a, o := orderFlags(fs)
	operator := fs.String("operator", "", "who reads the evidence, for the audit line (default: the OS user)")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if !tasks.ValidID(*a) || !tasks.ValidID(*o) {
		return usageErr("--app-id and --order-no are required: 1 to 32 characters of A-Z a-z 0-9 _ -")
	}
	c, sink, err := m.configSink(ctx)
	if err != nil {
		return err
	}
	if *operator == "" {
		*operator = defaultOperator()
	}
	return m.verifyAs(ctx, sink, *a, *o, *operator, func() string { return m.noEvidenceReason(ctx, c, *a, *o) })
}

// verify checks an order's evidence as the OS user (the demo's check).
func (m *Main) verify(ctx context.Context, sink storage.Sink, appID, orderNo string) error {
	return m.verifyAs(ctx, sink, appID, orderNo, defaultOperator(), nil)
}

// verifyAs checks an order's evidence and writes the audit line of the
// read; why, when set, says why an order has no manifest.
func (m *Main) verifyAs(ctx context.Context, sink storage.Sink, appID, orderNo, actor string, why func() string) error {
	rep, err := sink.Verify(ctx, appID, orderNo)
	if errors.Is(err, storage.ErrNotFound) {
		reason := "its evidence is not stored: never stored, expired under the retention rule, or purged"
		if why != nil {
			reason = why()
		}
		return noErr("no manifest for %s:%s: %s", appID, orderNo, reason)
	}
	if errors.Is(err, storage.ErrInvalidManifest) {
		key, _ := sink.ManifestKey(appID, orderNo)
		_ = audit.Write(m.Stderr, audit.Event{Action: audit.ActionVerify, Actor: actor, AppID: appID, OrderNo: orderNo, Keys: []string{key}})
		return noErr("%v", err)
	}
	if rep == nil {
		return infraErr(err)
	}
	keys := []string{rep.ManifestKey}
	for _, f := range rep.Files {
		keys = append(keys, f.File.Key)
	}
	_ = audit.Write(m.Stderr, audit.Event{Action: audit.ActionVerify, Actor: actor, AppID: appID, OrderNo: orderNo, Keys: keys,
		Fields: []zap.Field{zap.Bool("ok", rep.OK() && err == nil)}})
	fmt.Fprintf(m.Stdout, "manifest %s\n", rep.ManifestKey)
	for _, f := range rep.Files {
		fmt.Fprintf(m.Stdout, "  %-13s %-6s %s  size %d  sha256 %s\n", f.Status, f.File.Kind, f.File.Key, f.File.Size, f.File.SHA256)
		if f.Status != storage.StatusOK && f.Status != storage.StatusMissing {
			fmt.Fprintf(m.Stdout, "  %-13s %-6s found size %d  sha256 %s\n", "", "", f.Size, f.SHA256)
		}
	}
	if !rep.OK() || err != nil {
		return noErr("evidence of %s:%s does not match its manifest", appID, orderNo)
	}
	fmt.Fprintf(m.Stdout, "ok: %d files match their manifest\n", len(rep.Files))
	return nil
}

// runFakeIdasc runs the provider simulator until ctx ends.
func (m *Main) runFakeIdasc(ctx context.Context, args []string) error {
	fs := m.flags("fake-idasc")
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	c, err := m.config()
	if err != nil {
		return err
	}
	apps := c.Apps
	if len(apps) == 0 {
		apps = map[string]string{demoAppID: demoSecret}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return infraErr(fmt.Errorf("listen on %s: %v", *addr, err))
	}
	srv := &http.Server{Handler: idasctest.New(idasctest.Options{Apps: apps}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	ids := make([]string, 0, len(apps))
	for id := range apps {
		ids = append(ids, id)
	}
	fmt.Fprintf(m.Stdout, "fake provider on http://%s (apps: %s); order-number scenarios are in the README\n", ln.Addr(), strings.Join(ids, ", "))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return infraErr(err)
	}
	return nil
}
