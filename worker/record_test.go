package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
		{"rejected first", 0, retry(retryRejected, errors.New("400101")), rejectedDelay / 2, rejectedDelay},
		{"rejected capped", 20, retry(retryRejected, errors.New("400101")), notReadyCap / 2, notReadyCap},
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
	c, err := s.create(ctx, first, "2")
	if err != nil || !c.created || c.rec.Status != StatusPassed || c.getFile != "2" {
		t.Fatalf("create(first) = %+v, %v", c, err)
	}
	second := &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: StatusError, Code: CodeRetriesExhausted}}
	c, err = s.create(ctx, second, "1")
	if err != nil || c.created || c.rec.Status != StatusPassed || c.getFile != "2" {
		t.Fatalf("create(second) = %+v, %v, want the first record and its get_file kept", c, err)
	}
	var stored Record
	if err := json.Unmarshal(c.raw, &stored); err != nil || stored.Status != StatusPassed {
		t.Errorf("raw record %s (%v), want the first one", c.raw, err)
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
	if _, err := s.create(ctx, &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: StatusPassed}, Evidence: Evidence{Status: EvidencePending}}, "1"); err != nil {
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

// TestRecordJSONFrozen guards the stored contract: partners and auditors
// read these names (CONTRACT.md sections 4 and 6).
func TestRecordJSONFrozen(t *testing.T) {
	t.Parallel()
	f := storage.File{Kind: "photo", Key: "evidence/A/O/photo.jpg", ContentType: "image/jpeg", Size: 3, SHA256: "ab"}
	r := &Record{Decision: storage.Decision{AppID: "A", OrderNo: "O", Status: "passed", Code: "0", Msg: "m",
		BizSeqNo: "b", TransactionTime: "t", OccurredTime: "o", LiveRate: "100", Similarity: "95.0",
		IDType: "01", IDNo: "110***********1234", Name: "张*", DecidedAt: "2026-11-28T01:02:03Z"},
		Evidence: Evidence{Status: "stored", ManifestKey: "evidence/A/O/manifest.json", Files: []storage.File{f}}}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"app_id":"A","order_no":"O","status":"passed","code":"0","msg":"m","biz_seq_no":"b",` +
		`"transaction_time":"t","occurred_time":"o","live_rate":"100","similarity":"95.0","id_type":"01",` +
		`"id_no":"110***********1234","name":"张*","decided_at":"2026-11-28T01:02:03Z",` +
		`"evidence":{"status":"stored","manifest_key":"evidence/A/O/manifest.json","files":[` +
		`{"kind":"photo","key":"evidence/A/O/photo.jpg","content_type":"image/jpeg","size":3,"sha256":"ab"}]}}`
	if string(got) != want {
		t.Errorf("record JSON =\n%s\nwant\n%s", got, want)
	}
	m, err := json.Marshal(r.manifest([]storage.File{f}, time.Date(2026, 11, 28, 1, 2, 4, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	wantM := want[:strings.Index(want, `,"evidence"`)] + `,"fetched_at":"2026-11-28T01:02:04Z","files":[` +
		`{"kind":"photo","key":"evidence/A/O/photo.jpg","content_type":"image/jpeg","size":3,"sha256":"ab"}]}`
	if string(m) != wantM {
		t.Errorf("manifest JSON =\n%s\nwant\n%s", m, wantM)
	}
}
