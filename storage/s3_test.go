package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
)

// TestS3Conformance runs the conformance suite against versitygw, which
// checks checksums, honours conditional writes and enforces object lock.
func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	storagetest.Run(t, storagetest.Capabilities{Checksums: true, ConditionalWrites: true, ObjectLock: true},
		func(t *testing.T, o storagetest.Options) storagetest.Setup {
			cfg := o.Config
			cfg.Bucket = srv.NewBucket(t, o.ObjectLock)
			sink, err := storage.NewS3(srv.Client(o.ClientOptions...), cfg)
			if err != nil {
				t.Fatalf("NewS3(%+v): %v", cfg, err)
			}
			return storagetest.Setup{Sink: sink, Client: srv.Client(), Bucket: cfg.Bucket, Prefix: cfg.Prefix}
		})
}

// TestPingServerDown checks that Ping, which backs /readyz, reports an S3
// server that is down and recovers when it is back.
func TestPingServerDown(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	sink, err := storage.NewS3(srv.Client(), storage.Config{Bucket: srv.Bucket})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	missing, err := storage.NewS3(srv.Client(), storage.Config{Bucket: "no-such-bucket"})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := missing.Ping(ctx); err == nil {
		t.Errorf("Ping(missing bucket) = nil, want an error")
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := sink.Ping(ctx); err == nil {
		t.Errorf("Ping(server stopped) = nil, want an error")
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := sink.Ping(ctx); err != nil {
		t.Errorf("Ping(server restarted) = %v, want nil", err)
	}
}

// TestPutFileMemory streams a 200 MB video through PutFile in a process of
// its own and checks that its peak RSS stays within rssLimitMiB (64 MiB;
// about 40 MiB measured): memory must not grow with the file.
func TestPutFileMemory(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	const size = 200 * 1000 * 1000
	res := runRSSChild(t, srv, size, 1)
	if peak := float64(res.PeakKiB) / 1024; peak > rssLimitMiB {
		t.Errorf("peak RSS streaming %d bytes = %.1f MiB, want at most %d MiB", size, peak, rssLimitMiB)
	}
}

func TestNewS3Config(t *testing.T) {
	t.Parallel()
	client := s3.New(s3.Options{Region: "us-east-1"})
	tests := []struct {
		cfg     storage.Config
		wantErr string // "" for a valid config
	}{
		{storage.Config{Bucket: "b"}, ""},
		{storage.Config{Bucket: "b", Prefix: "ev/", PartSize: 8 << 20, Concurrency: 4, SSE: "aws:kms", KMSKeyID: "k", LockMode: "COMPLIANCE", LockDays: 30, FailTimeout: time.Second}, ""},
		{storage.Config{Bucket: "b", SSE: "AES256", LockMode: "GOVERNANCE", LockDays: 1}, ""},
		{storage.Config{}, "bucket"},
		{storage.Config{Bucket: "b", Prefix: "evidence"}, "prefix"},
		{storage.Config{Bucket: "b", Prefix: "/evidence/"}, "prefix"},
		{storage.Config{Bucket: "b", PartSize: 1 << 20}, "part size"},
		{storage.Config{Bucket: "b", PartSize: 6 << 30}, "part size"},
		{storage.Config{Bucket: "b", Concurrency: -1}, "concurrency"},
		{storage.Config{Bucket: "b", Concurrency: 1000}, "concurrency"},
		{storage.Config{Bucket: "b", SSE: "aws:kms:dsse"}, "encryption"},
		{storage.Config{Bucket: "b", SSE: "AES256", KMSKeyID: "k"}, "kms key"},
		{storage.Config{Bucket: "b", LockMode: "GOVERNANCE"}, "lock days"},
		{storage.Config{Bucket: "b", LockDays: 3}, "lock mode"},
		{storage.Config{Bucket: "b", LockMode: "LEGAL_HOLD", LockDays: 3}, "lock mode"},
		{storage.Config{Bucket: "b", FailTimeout: -time.Second}, "fail timeout"},
	}
	for _, tt := range tests {
		_, err := storage.NewS3(client, tt.cfg)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("NewS3(%+v) = %v, want nil", tt.cfg, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("NewS3(%+v) = %v, want an error about %s", tt.cfg, err, tt.wantErr)
		}
	}
	if _, err := storage.NewS3(nil, storage.Config{Bucket: "b"}); err == nil {
		t.Errorf("NewS3(nil client) = nil, want an error")
	}
}

func TestSniff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind     string
		head     string
		name, ct string
	}{
		{"photo", "\xFF\xD8\xFF\xE0", "photo.jpg", "image/jpeg"},
		{"photo", "\xFF\xD8\xFF", "photo.jpg", "image/jpeg"},
		{"photo", "\xFF\xD8", "photo.bin", "application/octet-stream"},
		{"photo", "\x89PNG\r\n\x1A\n\x00", "photo.png", "image/png"},
		{"photo", "\x89PNG\r\n\x1A", "photo.bin", "application/octet-stream"},
		{"photo", "\x00\x00\x00\x18ftypmp42", "photo.bin", "application/octet-stream"},
		{"video", "\x00\x00\x00\x18ftypmp42", "video.mp4", "video/mp4"},
		{"video", "\x00\x00\x00\x18ftyp", "video.mp4", "video/mp4"},
		{"video", "\x00\x00\x00\x18fty", "video.bin", "application/octet-stream"},
		{"video", "ftyp\x00\x00\x00\x00", "video.bin", "application/octet-stream"},
		{"video", "\xFF\xD8\xFF\xE0", "video.bin", "application/octet-stream"},
		{"video", "", "video.bin", "application/octet-stream"},
	}
	for _, tt := range tests {
		name, ct := storage.Sniff(tt.kind, []byte(tt.head))
		if name != tt.name || ct != tt.ct {
			t.Errorf("Sniff(%q, %q) = %q, %q, want %q, %q", tt.kind, tt.head, name, ct, tt.name, tt.ct)
		}
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"TIDA0001", true},
		{"a", true},
		{"ord_0001-x", true},
		{strings.Repeat("z", 32), true},
		{"", false},
		{strings.Repeat("z", 33), false},
		{"a/b", false},
		{"..", false},
		{"a b", false},
		{"订单", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := storage.ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
