package perf

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/pacing"
)

// BenchmarkDecisionInProcess is row 1's worker run inside this process,
// wired as `facesync worker` wires it (idasc.New, ticketcache, storage.S3,
// worker.New with a metrics registry), so that `go test -cpuprofile` sees
// the worker's code: the table's rows run it as a separate process, which
// go test cannot profile. It adds no row to the table. Its figure is not
// row 1's: the fake provider and the polling share this process. It runs
// the worker with the fleet-wide pacing, as the binary does, and without
// it (Deps.Pacer nil), alternately, best of each kept: the ratio is what
// the pause check costs the decision path.
func BenchmarkDecisionInProcess(b *testing.B) {
	s := newStack(b, idasctest.Options{})
	var paced, unpaced float64
	for b.Loop() {
		for range rounds {
			for _, withPacing := range []bool{true, false} {
				b.StopTimer()
				s.reset(b)
				keys := s.enqueue(b, decisionOrders)
				w, closeAll := s.inProcessWorker(b, withPacing)
				b.StartTimer()
				start := time.Now()
				if err := w.Start(); err != nil {
					b.Fatalf("start worker: %v", err)
				}
				end := waitFor(b, nil, len(keys), s.completedCounter())
				rate := float64(len(keys)) / end.Sub(start).Seconds()
				b.StopTimer()
				w.Shutdown()
				closeAll()
				s.checkRecords(b, keys)
				b.StartTimer()
				if withPacing {
					paced = max(paced, rate)
				} else {
					unpaced = max(unpaced, rate)
				}
			}
		}
	}
	b.ReportMetric(paced, "decisions/s")
	b.ReportMetric(unpaced, "unpaced-decisions/s")
	b.ReportMetric(paced/unpaced, "paced/unpaced")
}

// inProcessWorker builds a worker on the stack with the defaults of
// `facesync worker`, its logger included (JSON at info, unbuffered, into a
// file as a pod's stderr would be); closeAll releases what it opened
// besides the worker.
func (s *stack) inProcessWorker(b *testing.B, withPacing bool) (w *worker.Worker, closeAll func()) {
	b.Helper()
	// The worker shares this pool with asynq: room for every task in flight.
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr, PoolSize: worker.DefaultConcurrency + worker.DefaultEvidenceConcurrency + 20})
	provider := idasc.New(s.fake.URL)
	reg := prometheus.NewRegistry()
	tickets, err := ticketcache.New(rdb, ticketcache.Options{
		Registerer: reg,
		FetchToken: func(ctx context.Context, app string) (ticketcache.Credential, error) {
			c, err := provider.AccessToken(ctx, app, appSecret)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
		FetchTicket: func(ctx context.Context, app, token string) (ticketcache.Credential, error) {
			c, err := provider.SignTicket(ctx, app, token)
			return ticketcache.Credential{Value: c.Value, ExpiresIn: c.ExpiresIn}, err
		},
	})
	if err != nil {
		b.Fatalf("ticketcache.New: %v", err)
	}
	sink, err := storage.NewS3(storagetest.NewS3Client(s.s3.Endpoint, s.s3.AccessKey, s.s3.SecretKey), storage.Config{Bucket: s.s3.Bucket})
	if err != nil {
		b.Fatalf("storage.NewS3: %v", err)
	}
	logFile, err := os.CreateTemp(b.TempDir(), "worker-*.log")
	if err != nil {
		b.Fatal(err)
	}
	var pacer *pacing.Pacer
	if withPacing {
		if pacer, err = pacing.New(rdb, pacing.Config{}); err != nil {
			b.Fatalf("pacing.New: %v", err)
		}
	}
	w, err = worker.New(worker.Config{Apps: []string{appID}},
		worker.Deps{Redis: rdb, Provider: provider, Tickets: tickets, Sink: sink, Registerer: reg, Logger: productionLogger(logFile), Pacer: pacer})
	if err != nil {
		b.Fatalf("worker.New: %v", err)
	}
	return w, func() {
		_ = tickets.Close()
		_ = rdb.Close()
		_ = logFile.Close()
	}
}

// productionLogger is the logger `facesync worker` builds at its defaults
// (FACESYNC_LOG_FORMAT json, FACESYNC_LOG_LEVEL info; see newLogger in
// cmd/facesync), writing to w.
func productionLogger(w *os.File) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel))
}
