package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc"
)

func TestMaskIDNo(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"110101199003071234", "110***********1234"},
		{"11010119900307123X", "110***********123X"},
		{"123456789012", "123*****9012"},
		{"12345678901", "*********01"},
		{"AB12", "**12"},
		{"7", "7"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskIDNo(tt.in); got != tt.want {
			t.Errorf("MaskIDNo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"张三", "张*"},
		{"欧阳娜娜", "欧***"},
		{"Alice", "A****"},
		{"李", "李"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskName(tt.in); got != tt.want {
			t.Errorf("MaskName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRecordFromResultMasks(t *testing.T) {
	t.Parallel()
	r := recordFromResult("A", "O", &idasc.Result{Code: "0", IDNo: "110101199003071234", Name: "张三"}, StatusPassed)
	if r.IDNo != "110***********1234" || r.Name != "张*" {
		t.Fatalf("recordFromResult kept PII: %+v", r)
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		n        int
		err      error
		min, max time.Duration
	}{
		{"lease expired", 5, asynq.ErrLeaseExpired, promptDelay, promptDelay},
		{"shutdown", 5, fmt.Errorf("x: %w", context.Canceled), promptDelay, promptDelay},
		{"rejected", 9, retry(retryRejected, errors.New("400101")), rejectedDelay, rejectedDelay},
		{"not ready first", 0, retry(retryNotReady, errors.New("x")), notReadyBase / 2, notReadyBase},
		{"not ready capped", 20, retry(retryNotReady, errors.New("x")), notReadyCap / 2, notReadyCap},
		{"transient third", 3, retry(retryTransient, errors.New("x")), 4 * time.Second, 8 * time.Second},
		{"transient capped", 100, errors.New("unknown"), transientCap / 2, transientCap},
	}
	for _, tt := range tests {
		for i := 0; i < 50; i++ {
			if got := RetryDelay(tt.n, tt.err, nil); got < tt.min || got > tt.max {
				t.Fatalf("%s: RetryDelay(%d) = %v, want within [%v, %v]", tt.name, tt.n, got, tt.min, tt.max)
			}
		}
	}
	if IsFailure(context.Canceled) || !IsFailure(errors.New("x")) {
		t.Errorf("IsFailure: a shutdown must not spend the retry budget, other errors must")
	}
}

func TestFirstDecisionWins(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := &store{rdb: redis.NewClient(&redis.Options{Addr: mr.Addr()}), ttl: time.Hour}
	ctx := context.Background()
	first := &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: StatusPassed, Code: "0"}, Evidence: Evidence{Status: EvidencePending}}
	got, created, err := s.create(ctx, first)
	if err != nil || !created || got.Status != StatusPassed {
		t.Fatalf("create(first) = %+v, %v, %v", got, created, err)
	}
	second := &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: StatusError, Code: CodeRetriesExhausted}}
	got, created, err = s.create(ctx, second)
	if err != nil || created || got.Status != StatusPassed {
		t.Fatalf("create(second) = %+v, %v, %v, want the first record kept", got, created, err)
	}
	if ttl := mr.TTL(DecisionKey("A", "O")); ttl != time.Hour {
		t.Errorf("record TTL = %v, want 1h", ttl)
	}
}

// TestUpdateEvidenceNoLostUpdate runs many concurrent read-modify-writes on
// one record on a real Redis: each appends a file, none may be lost.
func TestUpdateEvidenceNoLostUpdate(t *testing.T) {
	t.Parallel()
	db := ticketcachetest.NewDB(t)
	s := &store{rdb: db.Client, ttl: time.Hour}
	ctx := context.Background()
	if _, _, err := s.create(ctx, &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: StatusPassed}, Evidence: Evidence{Status: EvidencePending}}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.updateEvidence(ctx, "A", "O", func(e *Evidence) bool {
				e.Files = append(e.Files, storage.File{Kind: fmt.Sprint(i)})
				return true
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.get(ctx, "A", "O")
	if err != nil || len(r.Evidence.Files) != n {
		t.Fatalf("after %d concurrent updates the record has %d files (%v), want %d", n, len(r.Evidence.Files), err, n)
	}
	if ttl := db.Client.TTL(ctx, DecisionKey("A", "O")).Val(); ttl <= 0 {
		t.Errorf("TTL after updates = %v, want kept", ttl)
	}
}

func TestResultWaitClockStartsOnce(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s := &store{rdb: redis.NewClient(&redis.Options{Addr: mr.Addr()}), ttl: time.Hour}
	t0 := time.UnixMilli(1_700_000_000_000)
	got, err := s.since(context.Background(), "A", "O", t0, time.Hour)
	if err != nil || !got.Equal(t0) {
		t.Fatalf("since first = %v, %v", got, err)
	}
	got, err = s.since(context.Background(), "A", "O", t0.Add(time.Minute), time.Hour)
	if err != nil || !got.Equal(t0) {
		t.Fatalf("since later = %v, %v, want the first time %v", got, err, t0)
	}
}

func TestConfigRefusesShortEvidenceDelay(t *testing.T) {
	t.Parallel()
	c := Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, EvidenceDelay: 500 * time.Millisecond}
	if err := c.setDefaults(); err == nil {
		t.Fatalf("setDefaults accepted an evidence delay of 500ms")
	}
}
