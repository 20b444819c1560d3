package redisconn

import (
	"errors"
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
	now = now.Add(time.Second)
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
	if end["errors"] != int64(100) || end["burst"] != 2*time.Second {
		t.Errorf("end of burst fields %v, want errors=100 burst=2s", end)
	}
	if logs.All()[0].Level != zapcore.WarnLevel {
		t.Errorf("first line level %v, want warn", logs.All()[0].Level)
	}
}
