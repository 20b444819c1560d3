package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWebhooksFile: the webhooks file is read at start; a malformed one
// stops the worker with one line naming the variable and the line, never
// the secret.
func TestWebhooksFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# partner\nTIDA0001 https://partner.example/hooks whsec-good-secret\n")
	c, err := LoadConfig(func(k string) string {
		return map[string]string{"FACESYNC_WEBHOOKS_FILE": good, "FACESYNC_WEBHOOK_WAIT": "2h"}[k]
	})
	if err != nil || len(c.Webhooks) != 1 || c.WebhookWait != 2*time.Hour || c.WebhookInsecure {
		t.Fatalf("LoadConfig(good file) = %+v, %v", c, err)
	}
	if wc := c.workerConfig(nil).Webhooks; len(wc.Endpoints) != 1 || wc.Wait != 2*time.Hour {
		t.Errorf("worker webhooks = %+v", wc)
	}

	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"FACESYNC_WEBHOOKS_FILE": write("short", "\n# c\nTIDA0001 https://partner.example/h\n")}, "FACESYNC_WEBHOOKS_FILE: line 3: want APP_ID URL SECRET"},
		{map[string]string{"FACESYNC_WEBHOOKS_FILE": write("http", "TIDA0001 http://partner.example/h whsec-bad-secret\n")}, "FACESYNC_WEBHOOKS_FILE: line 1: http:// is allowed only on a loopback host"},
		{map[string]string{"FACESYNC_WEBHOOKS_FILE": filepath.Join(dir, "missing")}, "FACESYNC_WEBHOOKS_FILE: open"},
		{map[string]string{"FACESYNC_WEBHOOK_WAIT": "forever"}, "FACESYNC_WEBHOOK_WAIT"},
		{map[string]string{"FACESYNC_WEBHOOK_INSECURE": "maybe"}, "FACESYNC_WEBHOOK_INSECURE"},
	}
	for _, tt := range tests {
		var out, errb lockedBuffer
		m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return tt.env[k] }}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code := m.Run(ctx, []string{"worker"})
		cancel()
		msg := strings.TrimSpace(errb.String())
		if code != 2 || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "secret") {
			t.Errorf("worker with %v: exit %d, stderr %q, want 2 and one line containing %q (no secret)", tt.env, code, msg, tt.want)
		}
	}
	insecure := write("insecure", "TIDA0001 http://partner.example/h whsec-x\n")
	if _, err := LoadConfig(func(k string) string {
		return map[string]string{"FACESYNC_WEBHOOKS_FILE": insecure, "FACESYNC_WEBHOOK_INSECURE": "true"}[k]
	}); err != nil {
		t.Errorf("LoadConfig(http:// with FACESYNC_WEBHOOK_INSECURE=true) = %v", err)
	}
}
