package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
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
)

const (
	appID  = "TIDA0001"
	secret = "s3cr3t-app-secret-value"
)

// bundle is one test's real parts: its own Redis database, fake provider,
// versitygw with a bucket, and a running worker.
type bundle struct {
	db     *ticketcachetest.DB
	fake   *idasctest.Server
	s3     *s3.Client
	bucket string
	sink   *storage.S3
	w      *worker.Worker
	client *asynq.Client
	insp   *asynq.Inspector
	logs   *observer.ObservedLogs
	cfg    worker.Config
}

type setupOpts struct {
	cfg       worker.Config
	scenarios map[string]idasctest.Scenario
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	srv := storagetest.StartServer(t)
	b := &bundle{db: ticketcachetest.NewDB(t)}
	b.fake = idasctest.NewServer(t, idasctest.Options{Apps: map[string]string{appID: secret}})
	for order, sc := range o.scenarios {
		b.fake.SetScenario(appID, order, sc)
	}
	b.s3 = srv.Client()
	b.bucket = srv.NewBucket(t, false)
	sink, err := storage.NewS3(b.s3, storage.Config{Bucket: b.bucket})
	if err != nil {
		t.Fatal(err)
	}
	b.sink = sink
	provider := idasc.New(b.fake.URL)
	tickets, err := ticketcache.New(b.db.Client, ticketcache.Options{
		FetchToken: func(ctx context.Context, app string) (ticketcache.Credential, error) {
			c, err := provider.AccessToken(ctx, app, secret)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
		FetchTicket: func(ctx context.Context, app, token string) (ticketcache.Credential, error) {
			c, err := provider.SignTicket(ctx, app, token)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	b.logs = logs
	ropt := asynq.RedisClientOpt{Addr: b.db.Addr, DB: b.db.DB}
	cfg := o.cfg
	cfg.Redis = ropt
	cfg.Apps = []string{appID}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 10
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	b.cfg = cfg
	b.w, err = worker.New(cfg, worker.Deps{
		Redis: b.db.Client, Provider: provider, Tickets: tickets, Sink: sink,
		Logger: zap.New(core), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.client = asynq.NewClient(ropt)
	b.insp = asynq.NewInspector(ropt)
	t.Cleanup(func() {
		b.w.Shutdown()
		_ = b.client.Close()
		_ = b.insp.Close()
	})
	if err := b.w.Start(); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) enqueue(t *testing.T, orderNo string, getFile tasks.GetFile, opts ...asynq.Option) {
	t.Helper()
	if _, err := tasks.Enqueue(context.Background(), b.client, tasks.FetchResult{AppID: appID, OrderNo: orderNo, GetFile: getFile}, opts...); err != nil {
		t.Fatal(err)
	}
}

// record reads an order's decision record, nil if none.
func (b *bundle) record(t *testing.T, orderNo string) *worker.Record {
	t.Helper()
	raw, err := b.db.Client.Get(context.Background(), worker.DecisionKey(appID, orderNo)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var r worker.Record
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("record %s: %v", raw, err)
	}
	return &r
}

// waitFor polls until cond holds, for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFinal waits until the order has a record whose evidence is no
// longer pending, and returns it.
func (b *bundle) waitFinal(t *testing.T, orderNo string, d time.Duration) *worker.Record {
	t.Helper()
	var r *worker.Record
	waitFor(t, d, "a final record for "+orderNo, func() bool {
		r = b.record(t, orderNo)
		return r != nil && r.Evidence.Status != worker.EvidencePending
	})
	return r
}

// taskState returns a task's state and last error, waiting until it is
// in one of the wanted states.
func (b *bundle) waitTask(t *testing.T, queue, id string, want asynq.TaskState, d time.Duration) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	waitFor(t, d, fmt.Sprintf("task %s in %s to be %v", id, queue, want), func() bool {
		var err error
		info, err = b.insp.GetTaskInfo(queue, id)
		if err == nil && info.LastErr != "" && info.State != want {
			t.Logf("task %s: state %v last error %q", id, info.State, info.LastErr)
		}
		return err == nil && info.State == want
	})
	return info
}

// object reads a stored object.
func (b *bundle) object(t *testing.T, key string) ([]byte, string) {
	t.Helper()
	out, err := b.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
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

// keys lists the bucket's keys.
func (b *bundle) keys(t *testing.T) []string {
	t.Helper()
	out, err := b.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(b.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// syncRequests counts the fake's sync requests for an order, with or
// without get_file.
func (b *bundle) syncRequests(orderNo string, withFile bool) int {
	n := 0
	for _, r := range b.fake.Requests() {
		if r.OrderNo == orderNo && strings.HasSuffix(r.Path, "/sync") && (r.GetFile != "") == withFile {
			n++
		}
	}
	return n
}
