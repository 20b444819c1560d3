// Package workertest is facesync's one shared test environment: real
// Redis, a real S3-compatible server, the fake provider and the worker,
// built by New; a record reader through the order store; one manual Clock;
// and the runner for the facesync binary as a child process (Binary,
// Start). Tests of every package build their world from it rather than
// each keeping a stack builder of its own.
package workertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/pacing"
	"github.com/facesync/facesync/worker/tracing"
)

// The app every environment configures. The secret is the fake
// provider's, not a real one.
const (
	AppID  = "TIDA0001"
	Secret = "s3cr3t-app-secret-value"
)

// Options shape an Env. Zero values give a started worker with
// concurrency 10 and a 2 s shutdown timeout.
type Options struct {
	Config    worker.Config                 // Apps is set by New
	Scenarios map[string]idasctest.Scenario // by order number
	Clock     *Clock                        // shared by the fake provider and the ticket cache; nil: real time
	NoStart   bool                          // build the worker without starting its servers
	// S3 stores evidence on a versitygw bucket through the real AWS SDK
	// client; otherwise it goes to a storage.Memory sink, which passes the
	// same conformance suite and needs no server.
	S3 bool
	// Tracer traces the worker as `facesync worker` does with OTEL_* set:
	// task attempts, provider calls, uploads and Redis scripts.
	Tracer trace.TracerProvider
	// Pacing configures the worker's fleet-wide pacing (its Redis is the
	// environment's); NoPacing leaves Deps.Pacer nil: no pacing at all.
	Pacing   pacing.Config
	NoPacing bool
	// ProviderOptions configure the provider client every worker of the
	// environment shares, such as an HTTP client that records the calls.
	ProviderOptions []idasc.Option
	// Confirm is the worker's Deps.Confirm (with Config.WaitReplica).
	Confirm func(ctx context.Context, keys ...string) error
}

// Env is one test's real parts: its own Redis database, fake provider,
// evidence sink (in memory, or an S3 server with a bucket), and a worker.
type Env struct {
	DB        *ticketcachetest.DB
	Fake      *idasctest.Server
	Sink      storage.Sink
	Memory    *storage.Memory // the sink, unless Options.S3
	S3        *s3.Client      // with Options.S3
	Bucket    string          // with Options.S3
	Store     *orderstore.Store
	Tickets   *ticketcache.Cache
	Worker    *worker.Worker
	Pacer     *pacing.Pacer        // nil with Options.NoPacing
	Registry  *prometheus.Registry // the worker's metrics
	Client    *asynq.Client
	Inspector *asynq.Inspector
	Logs      *observer.ObservedLogs
	Config    worker.Config
	opts      Options
	provider  *idasc.Client
}

// New builds an Env; everything it started stops when the test ends.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	e := &Env{DB: ticketcachetest.NewDB(t), opts: o}
	fo := idasctest.Options{Apps: map[string]string{AppID: Secret}}
	if o.Clock != nil {
		fo.Now = o.Clock.Now
	}
	e.Fake = idasctest.NewServer(t, fo)
	for order, sc := range o.Scenarios {
		e.Fake.SetScenario(AppID, order, sc)
	}
	var err error
	if o.S3 {
		srv := storagetest.StartServer(t)
		e.S3 = srv.Client()
		e.Bucket = srv.NewBucket(t, false)
		if e.Sink, err = storage.NewS3(e.S3, storage.Config{Bucket: e.Bucket}); err != nil {
			t.Fatal(err)
		}
	} else {
		if e.Memory, err = storage.NewMemory(storage.MemoryConfig{}); err != nil {
			t.Fatal(err)
		}
		e.Sink = e.Memory
	}
	popts := o.ProviderOptions
	if o.Tracer != nil {
		e.DB.Client.AddHook(tracing.RedisHook(o.Tracer))
		e.Sink = tracing.Sink(e.Sink, o.Tracer)
		popts = append(popts, idasc.WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { return tracing.Transport(rt, o.Tracer) }))
	}
	provider := idasc.New(e.Fake.URL, popts...)
	e.provider = provider
	var clock ticketcache.Clock
	if o.Clock != nil {
		clock = o.Clock
	}
	e.Tickets, err = ticketcache.New(e.DB.Client, TicketOptions(provider, clock))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	e.Logs = logs
	ropt := asynq.RedisClientOpt{Addr: e.DB.Addr, DB: e.DB.DB}
	cfg := o.Config
	cfg.Apps = []string{AppID}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 10
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	e.Config = cfg
	if e.Store, err = orderstore.New(e.DB.Client, orderstore.Config{TTL: cfg.DecisionTTL}); err != nil {
		t.Fatal(err)
	}
	e.Pacer = e.newPacer(t)
	e.Registry = prometheus.NewRegistry()
	e.Worker, err = worker.New(cfg, worker.Deps{
		Redis: e.DB.Client, Provider: provider, Tickets: e.Tickets, Sink: e.Sink,
		Logger: zap.New(core), Registerer: e.Registry, Pacer: e.Pacer, Tracer: o.Tracer, Confirm: o.Confirm,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Client = asynq.NewClient(ropt)
	e.Inspector = asynq.NewInspector(ropt)
	t.Cleanup(func() {
		e.Worker.Shutdown()
		_ = e.Client.Close()
		_ = e.Inspector.Close()
	})
	if !o.NoStart {
		if err := e.Worker.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newPacer builds a Pacer on the environment's Redis, as a pod does, or
// nil with Options.NoPacing.
func (e *Env) newPacer(t testing.TB) *pacing.Pacer {
	t.Helper()
	if e.opts.NoPacing {
		return nil
	}
	p, err := pacing.New(e.DB.Client, e.opts.Pacing)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// AddWorker starts another worker on the environment's Redis, provider and
// bucket, as another pod of the fleet: its own ticket cache, Pacer and
// metrics, the environment's configuration. It stops when the test ends.
func (e *Env) AddWorker(t testing.TB) *worker.Worker {
	t.Helper()
	var clock ticketcache.Clock
	if e.opts.Clock != nil {
		clock = e.opts.Clock
	}
	tickets, err := ticketcache.New(e.DB.Client, TicketOptions(e.provider, clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tickets.Close() })
	w, err := worker.New(e.Config, worker.Deps{
		Redis: e.DB.Client, Provider: e.provider, Tickets: tickets, Sink: e.Sink,
		Logger: zap.NewNop(), Registerer: prometheus.NewRegistry(), Pacer: e.newPacer(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return w
}

// TicketOptions are ticket-cache options that fetch from provider with
// the environment's app secret; clock may be nil.
func TicketOptions(provider *idasc.Client, clock ticketcache.Clock) ticketcache.Options {
	return ticketcache.Options{
		Clock: clock,
		// As the binary does: a refused account or request ends the refresh.
		Final: func(err error) bool { return idasc.IsRefused(err) || idasc.IsBadRequest(err) },
		FetchToken: func(ctx context.Context, app string) (ticketcache.Credential, error) {
			c, err := provider.AccessToken(ctx, app, Secret)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
		FetchTicket: func(ctx context.Context, app, token string) (ticketcache.Credential, error) {
			c, err := provider.SignTicket(ctx, app, token)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
	}
}

// Enqueue enqueues an order of AppID with the partner's helper.
func (e *Env) Enqueue(t testing.TB, orderNo string, getFile tasks.GetFile, opts ...asynq.Option) {
	t.Helper()
	if _, err := tasks.Enqueue(context.Background(), e.Client, tasks.FetchResult{AppID: AppID, OrderNo: orderNo, GetFile: getFile}, opts...); err != nil {
		t.Fatal(err)
	}
}

// Record reads an order's decision record, nil if none.
func (e *Env) Record(t testing.TB, orderNo string) *orderstore.Record {
	t.Helper()
	r, err := ReadRecord(context.Background(), e.Store, AppID, orderNo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ReadRecord reads an order's record through s: nil, nil when there is
// none.
func ReadRecord(ctx context.Context, s *orderstore.Store, appID, orderNo string) (*orderstore.Record, error) {
	r, _, err := s.Get(ctx, appID, orderNo)
	if errors.Is(err, orderstore.ErrNoRecord) {
		return nil, nil
	}
	return r, err
}

// WaitFor polls until cond holds, for at most d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFinal waits until the order has a record whose evidence is no
// longer pending, and returns it.
func (e *Env) WaitFinal(t testing.TB, orderNo string, d time.Duration) *orderstore.Record {
	t.Helper()
	var r *orderstore.Record
	WaitFor(t, d, "a final record for "+orderNo, func() bool {
		r = e.Record(t, orderNo)
		return r != nil && r.Final()
	})
	return r
}

// WaitTask waits until a task is in state want, and returns its info.
func (e *Env) WaitTask(t testing.TB, queue, id string, want asynq.TaskState, d time.Duration) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	WaitFor(t, d, fmt.Sprintf("task %s in %s to be %v", id, queue, want), func() bool {
		var err error
		info, err = e.Inspector.GetTaskInfo(queue, id)
		if err == nil && info.LastErr != "" && info.State != want {
			t.Logf("task %s: state %v last error %q", id, info.State, info.LastErr)
		}
		return err == nil && info.State == want
	})
	return info
}

// Object reads a stored object and its content type.
func (e *Env) Object(t testing.TB, key string) ([]byte, string) {
	t.Helper()
	if e.Memory != nil {
		data, ct, ok := e.Memory.Object(key)
		if !ok {
			t.Fatalf("no object %s", key)
		}
		return data, ct
	}
	out, err := e.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data, aws.ToString(out.ContentType)
}

// Keys lists the stored keys.
func (e *Env) Keys(t testing.TB) []string {
	t.Helper()
	if e.Memory != nil {
		return e.Memory.Keys()
	}
	out, err := e.S3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(e.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// SyncRequests counts the fake's sync requests for an order, with or
// without get_file.
func (e *Env) SyncRequests(orderNo string, withFile bool) int {
	n := 0
	for _, r := range e.Fake.Requests() {
		if r.OrderNo == orderNo && strings.HasSuffix(r.Path, "/sync") && (r.GetFile != "") == withFile {
			n++
		}
	}
	return n
}
