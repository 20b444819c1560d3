// Package perf holds facesync's benchmark table (`make bench`). It has no
// code of its own: its benchmarks run the built facesync binary as worker
// processes against a real redis-server, the fake provider (idasctest)
// served by the benchmark process and versitygw, and each row is measured
// in the same run as the reference it is judged against:
//
//   - decision throughput of one worker process (get_file "0", provider at
//     zero latency, concurrency 50) against a plain asynq server with a
//     no-op handler on the same Redis, same concurrency, same tasks: the
//     ratio must reach 0.5;
//   - decision throughput at 200 ms provider latency and concurrency 200
//     against the bound concurrency / latency (1000 tasks/s): at least 90 %;
//   - evidence pipeline MB/s (fake provider over HTTP, idasc.Client
//     SyncEvidence, storage.S3 PutFile into versitygw) against the in-memory
//     base64 decode + SHA-256 ceiling, and the pipeline's peak RSS in a
//     fresh process for 10, 100 and 200 MB videos: flat, at most 64 MiB;
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
// $FACESYNC_TEST_BINARY. Plain `go test` runs nothing here.
package perf
