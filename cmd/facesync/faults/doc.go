// Package faults is facesync's end-to-end fault-injection suite. Its tests
// start a real redis-server, the S3-compatible test server (versitygw), the
// fake provider and the built facesync binary as worker processes, then
// break one of them mid-run: a worker killed with SIGKILL or stopped with
// SIGTERM in the middle of an upload, Redis shut down and started again,
// the S3 server gone for 20 s, provider faults of every kind, duplicate
// orders and malformed payloads. Each test ends by checking that every
// order it enqueued reached its terminal state and that every stored file
// is byte for byte the file the provider sent.
//
// The package holds no code of its own beyond this comment: everything is
// in its tests, run with
//
//	go test ./cmd/facesync/faults/ -count=1 -v
//
// The binary under test is built once per run from ./cmd/facesync, or
// taken from $FACESYNC_TEST_BINARY when that is set. Each worker's JSON log
// is printed (its last lines) when its test fails, and copied into the
// folder $FACESYNC_TEST_KEEP_LOGS names when that is set.
package faults
