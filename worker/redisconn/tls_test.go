package redisconn_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/redisconn"
)

// A task goes through asynq over rediss://, client and server sharing the
// one go-redis client, trusting the CA of FACESYNC_REDIS_CA_FILE.
func TestTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := ticketcachetest.StartTLSServer(t)
	cfg, err := redisconn.Parse(srv.URL(2), srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := cfg.Connect(ctx, 5*time.Second)
	if err != nil {
		t.Fatalf("Connect over TLS: %v", err)
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}

	done := make(chan string, 1)
	aqs := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"tls": 1}, TaskCheckInterval: 20 * time.Millisecond, Logger: quietLogger{},
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("tls:task", func(ctx context.Context, task *asynq.Task) error {
		done <- string(task.Payload())
		return nil
	})
	if err := aqs.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer aqs.Shutdown()
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("tls:task", []byte("over tls"), asynq.Queue("tls"))); err != nil {
		t.Fatalf("enqueue over TLS: %v", err)
	}
	select {
	case got := <-done:
		if got != "over tls" {
			t.Fatalf("handler got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("task enqueued over TLS never processed")
	}
}

// The wrong CA, and no CA file at all (system roots, which do not hold
// the test CA): one line naming what to fix.
func TestTLSWrongCA(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartTLSServer(t)
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	if _, _, err := ticketcachetest.WriteCA(other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caFile, want string
	}{
		{other, "its TLS certificate is not signed by a CA in FACESYNC_REDIS_CA_FILE (" + other + ")"},
		{"", "not signed by a CA in the system roots (set FACESYNC_REDIS_CA_FILE)"},
	} {
		cfg, err := redisconn.Parse("rediss://:tls-secret@"+srv.Addr+"/0", tc.caFile)
		if err != nil {
			t.Fatal(err)
		}
		rdb, err := cfg.Connect(context.Background(), 5*time.Second)
		if err == nil {
			_ = rdb.Close()
			t.Fatalf("Connect with CA file %q succeeded, want an error", tc.caFile)
		}
		msg := err.Error()
		t.Logf("CA file %q: %s", tc.caFile, msg)
		if redisconn.IsFailover(err) {
			t.Errorf("IsFailover(%v) = true: a wrong CA would be retried for ever", err)
		}
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "tls-secret") {
			t.Errorf("Connect error %q, want one line saying %q, without the password", msg, tc.want)
		}
	}
}
