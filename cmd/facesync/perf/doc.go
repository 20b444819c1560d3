// Package perf holds facesync's benchmark table (`make bench`). It has no
// code of its own: its benchmarks run the built facesync binary as worker
// processes against a real redis-server, the fake provider (idasctest)
// served by the benchmark process and versitygw, and each row is measured
// in the same run as the reference it is judged against:
//
//   - decision throughput of one worker process (get_file "0", provider at
//     zero latency, concurrency 50) against a naive correct handler in a
//     process of its own (one signed sync call, one SET of the record, the
//     task result; naiveChild) on the same Redis, same concurrency, same
//     pre-enqueued tasks: at least 1.0× (stretch 1.1×), and the worker's
//     CPU per order at most the naive handler's; asynq's no-op handler is
//     the figure of asynq's own cost;
//   - decision throughput at 200 ms provider latency and concurrency 200
//     against the bound concurrency / latency (1000 tasks/s): at least 90 %;
//   - decision latency at 10 orders/s, enqueued one by one with the
//     provider answering at once: enqueue to record p50 ≤ 50 ms, p95 ≤
//     120 ms; and in the same run the evidence delay, decision call to
//     first evidence call as the fake provider receives them: 1.0-1.25 s;
//   - the Redis commands per second of one idle worker process at the
//     default FACESYNC_POLL_INTERVAL and at 1s (a figure);
//   - evidence pipeline MB/s (fake provider over HTTP, idasc.Client
//     SyncEvidence, storage.S3 PutFile into versitygw) against the upload
//     ceiling (the same decoded size from memory through PutFile), and the
//     pipeline's peak RSS in a fresh process for 10, 100 and 200 MB videos:
//     flat, at most 64 MiB;
//   - horizontal scaling over 1, 2 and 4 worker processes (a figure);
//   - access-token and SIGN-ticket mints per refresh with 8 worker
//     processes: exactly 1 each.
//
// Each benchmark reports its figures with ReportMetric, and the run ends by
// printing one markdown table of every row measured:
//
//	go test -run '^$' -bench . -benchtime 1x ./cmd/facesync/perf/
//
// The worker binary is built once per run, or taken from
// $FACESYNC_TEST_BINARY. Plain `go test` runs nothing here; with -short
// every run is small, to check the benchmarks rather than measure.
package perf
