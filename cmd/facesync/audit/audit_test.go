package audit_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"go.uber.org/zap"

	"github.com/facesync/facesync/cmd/facesync/audit"
)

// TestWriteOneLine: one JSON line with the contract's fields, at info.
func TestWriteOneLine(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	err := audit.Write(&b, audit.Event{
		Action: audit.ActionEvidenceLink, Actor: "partner-a", AppID: "TIDA0001", OrderNo: "ord1",
		Keys: []string{"evidence/TIDA0001/ord1/photo.jpg"}, Fields: []zap.Field{zap.Int("n", 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("Write wrote %d lines: %q", n, b.String())
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %q: %v", b.String(), err)
	}
	want := map[string]any{"level": "info", "msg": "evidence link", "audit": true, "action": "evidence_link",
		"actor": "partner-a", "app_id": "TIDA0001", "order_no": "ord1", "n": float64(1)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if keys, _ := got["keys"].([]any); len(keys) != 1 || keys[0] != "evidence/TIDA0001/ord1/photo.jpg" {
		t.Errorf("keys = %v", got["keys"])
	}
	if _, ok := got["ts"].(string); !ok {
		t.Errorf("no ts in %v", got)
	}

	b.Reset()
	if err := audit.Write(&b, audit.Event{Action: audit.ActionPurge, Actor: "dpo", AppID: "A", OrderNo: "O"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte(`"keys":[]`)) {
		t.Errorf("an event without keys should list none: %s", b.String())
	}
}
