package faults

import (
	"context"
	"testing"
	"time"

	"github.com/facesync/facesync/worker/orderstore"
)

// decided counts the orders that have a decision record.
func (s *stack) decided(orders []order) int {
	n := 0
	for _, o := range orders {
		if r, err := s.record(context.Background(), o.orderNo); err == nil && r != nil {
			n++
		}
	}
	return n
}

// stored counts the orders whose evidence is stored.
func (s *stack) stored(orders []order) int {
	n := 0
	for _, o := range orders {
		if r, err := s.record(context.Background(), o.orderNo); err == nil && r != nil && r.Evidence.Status == orderstore.EvidenceStored {
			n++
		}
	}
	return n
}

// TestRedisRestart shuts Redis down (SHUTDOWN, with an append-only file
// written on every command) in the middle of a run of 200 orders and starts
// it again. Every order enqueued before the restart, whatever stage it was
// in, and every order enqueued after it ends terminal with its evidence
// stored.
//
// It takes about two minutes: a task that ended while Redis was gone could
// not be moved out of asynq's active list (asynq v0.26.0's syncer retries
// that move with a context already cancelled), so it comes back only when
// asynq's recoverer finds its lease expired, 60 to 120 s later.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDAREDIS", "--appendonly", "yes", "--appendfsync", "always")
	before, after := passing("rr-a", 100), passing("rr-b", 100)
	s.startWorker()
	s.startWorker()
	for _, o := range before {
		s.enqueue(o)
	}
	// Some orders decided and some with evidence stored: the restart
	// catches orders in every stage.
	eventually(t, time.Minute, "first evidence stored", func() bool { return s.stored(before) >= 5 })
	t.Logf("at the shutdown: %d orders decided, %d with evidence stored", s.decided(before), s.stored(before))
	if err := s.redis.Shutdown(); err != nil {
		t.Fatalf("redis SHUTDOWN: %v", err)
	}
	time.Sleep(2 * time.Second) // the workers meet a Redis that is gone
	if err := s.redis.Restart(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	up := time.Now()
	for _, o := range after {
		s.enqueue(o)
	}
	s.check(append(before, after...), 4*time.Minute)
	t.Logf("all orders terminal %v after Redis came back", time.Since(up).Round(time.Second))
}

// TestS3Down stops the S3 server for 20 s in the middle of a run.
// Decisions go on without it; evidence waits, and every file is stored
// whole once the server is back.
func TestS3Down(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDAS3")
	before, during := passing("s3-a", 30), passing("s3-b", 30)
	s.startWorker()
	for _, o := range before {
		s.enqueue(o)
	}
	eventually(t, time.Minute, "first evidence stored", func() bool { return s.stored(before) >= 5 })
	if err := s.s3.Stop(); err != nil {
		t.Fatalf("stop the S3 server: %v", err)
	}
	down := time.Now()
	for _, o := range during {
		s.enqueue(o)
	}
	// Decisions need no S3: every order is decided while it is down.
	eventually(t, 20*time.Second, "decisions while S3 is down", func() bool { return s.decided(during) == len(during) })
	time.Sleep(20*time.Second - time.Since(down))
	if n := s.stored(during); n != 0 {
		t.Errorf("%d orders have evidence stored while S3 was down, want 0", n)
	}
	if err := s.s3.Restart(); err != nil {
		t.Fatalf("restart the S3 server: %v", err)
	}
	up := time.Now()
	s.check(append(before, during...), 3*time.Minute)
	t.Logf("all evidence stored %v after S3 came back", time.Since(up).Round(time.Second))
}
