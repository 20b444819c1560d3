package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
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
	r := recordFromResult("A", "O", &idasc.Result{Code: "0", IDNo: "110101199003071234", Name: "张三"}, orderstore.StatusPassed)
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
	readonly := retry(retryTransient, fmt.Errorf("record: %w", errors.New("READONLY You can't write against a read only replica.")))
	if IsFailure(readonly) || IsFailure(redisconn.ErrNotReplicated) || IsFailure(redisconn.ErrLost) {
		t.Errorf("IsFailure: a Redis failover must not spend the retry budget")
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if IsFailure(refused) != false {
		t.Errorf("IsFailure: a refused Redis connection must not spend the retry budget")
	}
	provider := &idasc.Error{Op: "sync", Class: idasc.ClassTransient, Err: refused}
	bucket := &url.Error{Op: "Put", URL: "http://s3", Err: refused}
	if !IsFailure(provider) || !IsFailure(fmt.Errorf("store evidence: %w", bucket)) {
		t.Errorf("IsFailure: the provider's or the bucket's refused connection must spend the retry budget")
	}
}

func TestConfigRefusesShortEvidenceDelay(t *testing.T) {
	t.Parallel()
	c := Config{EvidenceDelay: 500 * time.Millisecond}
	if err := c.setDefaults(); err == nil {
		t.Fatalf("setDefaults accepted an evidence delay of 500ms")
	}
}

// TestRecordJSONFrozen guards the stored contract: partners and auditors
// read these names in records and manifests.
func TestRecordJSONFrozen(t *testing.T) {
	t.Parallel()
	f := storage.File{Kind: "photo", Key: "evidence/A/O/photo.jpg", ContentType: "image/jpeg", Size: 3, SHA256: "ab"}
	r := &orderstore.Record{Decision: orderstore.Decision{AppID: "A", OrderNo: "O", Status: "passed", Code: "0", Msg: "m",
		BizSeqNo: "b", TransactionTime: "t", OccurredTime: "o", LiveRate: "100", Similarity: "95.0",
		IDType: "01", IDNo: "110***********1234", Name: "张*", DecidedAt: "2026-11-28T01:02:03Z"},
		Evidence: orderstore.Evidence{Status: "stored", ManifestKey: "evidence/A/O/manifest.json", Files: []storage.File{f}}}
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
	mf, err := manifestFor(r, []storage.File{f}, time.Date(2026, 11, 28, 1, 2, 4, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	m, err := json.Marshal(mf)
	if err != nil {
		t.Fatal(err)
	}
	wantM := want[:strings.Index(want, `,"evidence"`)] + `,"fetched_at":"2026-11-28T01:02:04Z","files":[` +
		`{"kind":"photo","key":"evidence/A/O/photo.jpg","content_type":"image/jpeg","size":3,"sha256":"ab"}]}`
	if string(m) != wantM {
		t.Errorf("manifest JSON =\n%s\nwant\n%s", m, wantM)
	}
	// A failed record names its category; it sits after msg.
	r.Status, r.Code, r.Category = "failed", "66660015", "identity"
	got, err = json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"msg":"m","category":"identity","biz_seq_no"`) {
		t.Errorf("failed record JSON = %s, want category after msg", got)
	}
}
