package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc"
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

// evidenceJob is what the parent hands the evidence child, as JSON in
// envEvidenceJob.
type evidenceJob struct {
	IdascURL, AppID, Secret, OrderNo       string
	Endpoint, AccessKey, SecretKey, Bucket string
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

// runEvidence runs the evidence child for one order and returns what it
// measured.
func (s *stack) runEvidence(tb testing.TB, orderNo string) evidenceResult {
	tb.Helper()
	job, _ := json.Marshal(evidenceJob{
		IdascURL: s.fake.URL, AppID: appID, Secret: appSecret, OrderNo: orderNo,
		Endpoint: s.s3.Endpoint, AccessKey: s.s3.AccessKey, SecretKey: s.s3.SecretKey, Bucket: s.s3.Bucket,
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
