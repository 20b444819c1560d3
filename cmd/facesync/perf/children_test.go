package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
)

// Variables of the no-op child.
const (
	envNoopAddr        = "FACESYNC_PERF_REDIS_ADDR"
	envNoopConcurrency = "FACESYNC_PERF_CONCURRENCY"
)

// noopChild is the reference of the decision throughput: a plain asynq
// server on the decision queue whose handler does nothing, with asynq's
// defaults otherwise. It runs until SIGTERM.
func noopChild() int {
	conc, err := strconv.Atoi(os.Getenv(envNoopConcurrency))
	if err != nil || conc < 1 {
		fmt.Fprintf(os.Stderr, "noop child: bad %s\n", envNoopConcurrency)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: os.Getenv(envNoopAddr)}, asynq.Config{
		Concurrency: conc,
		Queues:      map[string]int{tasks.QueueResult: 1},
		LogLevel:    asynq.WarnLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		fmt.Fprintln(os.Stderr, "noop child:", err)
		return 2
	}
	<-ctx.Done()
	srv.Shutdown()
	return 0
}

// Variables of the naive handler child, besides the no-op child's.
const (
	envNaiveIdascURL = "FACESYNC_PERF_IDASC_URL"
	envNaiveApp      = "FACESYNC_PERF_APP" // app_id=secret
)

// naiveChild is row 1's reference: the simplest correct decision handler,
// in a process of its own like a worker. It fetches an access token and a
// SIGN ticket from the fake provider once at start, and for each task
// makes one signed sync call (idasc.Client.Sync), one SET of the JSON
// record under the record key and one task result, on asynq's defaults
// otherwise. Everything a real worker adds (ticket sharing and refresh,
// first decision wins, retry budgets, evidence tasks, pacing, metrics,
// logs) is left out. It runs until SIGTERM.
func naiveChild() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "naive child:", err)
		return 2
	}
	conc, err := strconv.Atoi(os.Getenv(envNoopConcurrency))
	if err != nil || conc < 1 {
		return fail(fmt.Errorf("bad %s", envNoopConcurrency))
	}
	appID, secret, ok := strings.Cut(os.Getenv(envNaiveApp), "=")
	if !ok {
		return fail(fmt.Errorf("bad %s", envNaiveApp))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	provider := idasc.New(os.Getenv(envNaiveIdascURL))
	tok, err := provider.AccessToken(ctx, appID, secret)
	if err != nil {
		return fail(err)
	}
	ticket, err := provider.SignTicket(ctx, appID, tok.Value)
	if err != nil {
		return fail(err)
	}
	addr := os.Getenv(envNoopAddr)
	// A connection for every handler, as a worker sizes its pool.
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: conc + 10})
	defer rdb.Close()
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{
		Concurrency: conc,
		Queues:      map[string]int{tasks.QueueResult: 1},
		LogLevel:    asynq.WarnLevel,
	})
	handle := func(ctx context.Context, t *asynq.Task) error {
		var p tasks.FetchResult
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		res, err := provider.Sync(ctx, idasc.SyncRequest{AppID: p.AppID, OrderNo: p.OrderNo, Ticket: ticket.Value})
		status := orderstore.StatusPassed
		switch idasc.ClassOf(err) {
		case idasc.ClassNone:
		case idasc.ClassFailed:
			status = orderstore.StatusFailed
		default:
			return err // asynq retries
		}
		rec := orderstore.Record{
			Decision: orderstore.Decision{
				AppID: p.AppID, OrderNo: p.OrderNo, Status: status, Code: res.Code, Msg: res.Msg,
				BizSeqNo: res.BizSeqNo, TransactionTime: res.TransactionTime, OccurredTime: res.OccurredTime,
				LiveRate: res.LiveRate, Similarity: res.Similarity,
				IDType: res.IDType, IDNo: worker.MaskIDNo(res.IDNo), Name: worker.MaskName(res.Name),
				DecidedAt: time.Now().UTC().Format(time.RFC3339),
			},
			Evidence: orderstore.Evidence{Status: orderstore.EvidenceSkipped, Files: []storage.File{}},
		}
		b, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		if err := rdb.Set(ctx, orderstore.RecordKey(p.AppID, p.OrderNo), b, worker.DefaultDecisionTTL).Err(); err != nil {
			return err
		}
		_, err = t.ResultWriter().Write(b)
		return err
	}
	if err := srv.Start(asynq.HandlerFunc(handle)); err != nil {
		return fail(err)
	}
	<-ctx.Done()
	srv.Shutdown()
	return 0
}

// evidenceJob is what the parent hands the evidence child, as JSON in
// envEvidenceJob.
type evidenceJob struct {
	IdascURL, AppID, Secret, OrderNo       string
	Endpoint, AccessKey, SecretKey, Bucket string
	// UploadSize, when set, makes the job the upload ceiling: that many
	// bytes from memory straight into PutFile, no provider, no decode.
	UploadSize int64
}

// evidenceResult is what the evidence child prints on its last line.
type evidenceResult struct {
	BaseKiB, PeakKiB int64 // VmHWM before the fetch and after the upload
	Seconds          float64
	CPU              time.Duration // the whole process's, user and system
	File             storage.File
}

const envEvidenceJob = "FACESYNC_PERF_EVIDENCE_JOB"

// evidenceChild runs the evidence path of a worker for one video, alone in
// its process so that VmHWM is this pipeline's: idasc.Client.SyncEvidence
// from the fake provider (served by the parent) streaming into
// storage.S3.PutFile on versitygw (another process). It times the sync call
// and upload, not the token and ticket fetch before them.
func evidenceChild() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "evidence child:", err)
		return 1
	}
	var job evidenceJob
	if err := json.Unmarshal([]byte(os.Getenv(envEvidenceJob)), &job); err != nil {
		return fail(err)
	}
	sink, err := storage.NewS3(storagetest.NewS3Client(job.Endpoint, job.AccessKey, job.SecretKey), storage.Config{Bucket: job.Bucket})
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	if job.UploadSize > 0 {
		return uploadOnly(ctx, sink, job)
	}
	client := idasc.New(job.IdascURL)
	tok, err := client.AccessToken(ctx, job.AppID, job.Secret)
	if err != nil {
		return fail(err)
	}
	ticket, err := client.SignTicket(ctx, job.AppID, tok.Value)
	if err != nil {
		return fail(err)
	}
	base, err := procField("/proc/self/status", "VmHWM:")
	if err != nil {
		return fail(err)
	}
	var file storage.File
	start := time.Now()
	_, err = client.SyncEvidence(ctx, idasc.SyncRequest{AppID: job.AppID, OrderNo: job.OrderNo, Ticket: ticket.Value},
		tasks.GetFileVideo, 1<<40, func(kind string, r io.Reader) error {
			f, err := sink.PutFile(ctx, job.AppID, job.OrderNo, kind, r)
			file = f
			return err
		})
	secs := time.Since(start).Seconds()
	if err != nil {
		return fail(err)
	}
	peak, err := procField("/proc/self/status", "VmHWM:")
	if err != nil {
		return fail(err)
	}
	out, _ := json.Marshal(evidenceResult{BaseKiB: base, PeakKiB: peak, Seconds: secs, File: file})
	fmt.Println(string(out))
	return 0
}

// uploadOnly is the evidence child's upload ceiling: job.UploadSize
// random bytes, made before the clock starts, through storage.S3.PutFile
// from memory, so the transfer manager, the checksums and versitygw do
// all they do for the pipeline, without the provider's HTTP answer, the
// JSON extraction and the base64 decode.
func uploadOnly(ctx context.Context, sink *storage.S3, job evidenceJob) int {
	data := make([]byte, job.UploadSize)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(data)
	base, err := procField("/proc/self/status", "VmHWM:")
	if err != nil {
		fmt.Fprintln(os.Stderr, "evidence child:", err)
		return 1
	}
	start := time.Now()
	file, err := sink.PutFile(ctx, job.AppID, job.OrderNo, idasc.KindVideo, bytes.NewReader(data))
	secs := time.Since(start).Seconds()
	if err != nil {
		fmt.Fprintln(os.Stderr, "evidence child:", err)
		return 1
	}
	out, _ := json.Marshal(evidenceResult{BaseKiB: base, Seconds: secs, File: file})
	fmt.Println(string(out))
	return 0
}

// runEvidence runs the evidence child for one order and returns what it
// measured; uploadSize > 0 runs the upload ceiling of that many bytes
// instead.
func (s *stack) runEvidence(tb testing.TB, orderNo string, uploadSize int64) evidenceResult {
	tb.Helper()
	job, _ := json.Marshal(evidenceJob{
		IdascURL: s.fake.URL, AppID: appID, Secret: appSecret, OrderNo: orderNo,
		Endpoint: s.s3.Endpoint, AccessKey: s.s3.AccessKey, SecretKey: s.s3.SecretKey, Bucket: s.s3.Bucket,
		UploadSize: uploadSize,
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+childEvidence, envEvidenceJob+"="+string(job))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("evidence child for %s: %v", orderNo, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res evidenceResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		tb.Fatalf("evidence child for %s printed %q: %v", orderNo, out, err)
	}
	res.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res
}
