package redisconn

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestBurstLog(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	b := NewBurstLog(zap.New(core), 5*time.Second)
	now := time.Unix(1_700_000_000, 0)
	b.now = func() time.Time { return now }
	err := errors.New("READONLY You can't write against a read only replica.")

	b.OK() // no burst: nothing
	for i := 0; i < 100; i++ {
		b.Error(err)
		now = now.Add(10 * time.Millisecond)
	}
	// A success while the errors are fresh (a failover settling) keeps
	// the burst open; the first one after settle ends it.
	b.OK()
	now = now.Add(2 * time.Second)
	b.OK()
	b.OK()
	// A second burst, ended by a quiet gap rather than a success.
	b.Error(err)
	now = now.Add(6 * time.Second)
	b.Error(err)

	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	want := []string{
		"redis unavailable (failing over?); retrying, and counting further errors until it answers",
		"redis answers again",
		"redis unavailable (failing over?); retrying, and counting further errors until it answers",
		"redis errors stopped",
		"redis unavailable (failing over?); retrying, and counting further errors until it answers",
	}
	if len(got) != len(want) {
		t.Fatalf("logged %d lines %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
	end := logs.All()[1].ContextMap()
	if end["errors"] != int64(100) || end["burst"] != 3*time.Second {
		t.Errorf("end of burst fields %v, want errors=100 burst=3s", end)
	}
	if logs.All()[0].Level != zapcore.WarnLevel {
		t.Errorf("first line level %v, want warn", logs.All()[0].Level)
	}
}

type recordAsynq struct{ lines []string }

func (r *recordAsynq) Debug(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recordAsynq) Info(args ...any)  { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recordAsynq) Warn(args ...any)  { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recordAsynq) Error(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recordAsynq) Fatal(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }

type recordRedis struct{ lines []string }

func (r *recordRedis) Printf(_ context.Context, format string, v ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, v...))
}

// asynq's and go-redis's own failover lines join the burst; others pass.
func TestBurstLogLibraries(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	b := NewBurstLog(zap.New(core), time.Minute)
	now := time.Unix(1_700_000_000, 0)
	b.now = func() time.Time { return now }
	next := &recordAsynq{}
	al := b.AsynqLogger(next)
	for i := 0; i < 50; i++ {
		al.Warn(fmt.Sprintf("Could not mark task id=t%d as complete: redis command error: EVALSHA failed: READONLY You can't write against a read only replica.; Will retry syncing", i))
		al.Error("Dequeue error: dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	al.Warn("Retry exhausted for task id=t1")
	al.Info("Starting processing")
	nr := &recordRedis{}
	rl := b.RedisLogger(nr)
	rl.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, errors.New("connect: connection refused"))
	rl.Printf(context.Background(), "redis: discarding bad PubSub connection: %s", "protocol error")
	now = now.Add(settle)
	b.OK()

	if want := []string{"Retry exhausted for task id=t1", "Starting processing"}; fmt.Sprint(next.lines) != fmt.Sprint(want) {
		t.Errorf("asynq logger passed on %q, want %q", next.lines, want)
	}
	if len(nr.lines) != 1 || nr.lines[0] != "redis: discarding bad PubSub connection: protocol error" {
		t.Errorf("go-redis logger passed on %q, want only the PubSub line", nr.lines)
	}
	if n := logs.Len(); n != 2 {
		t.Fatalf("burst logged %d lines, want 2 (start and end)", n)
	}
	if got := logs.All()[1].ContextMap()["errors"]; got != int64(101) {
		t.Errorf("burst counted %v errors, want 101", got)
	}
}
