package storagetest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/facesync/facesync/storage/storagetest"
)

// TestBinaryFromEnv: a tool named by its variable but missing is an error
// that says how to get it, never another copy found elsewhere.
func TestBinaryFromEnv(t *testing.T) {
	for _, tool := range []struct {
		name, env string
		find      func() (string, error)
	}{
		{"versitygw", storagetest.EnvBinary, storagetest.Binary},
		{"minio", storagetest.EnvMinIO, storagetest.MinIOBinary},
	} {
		missing := filepath.Join(t.TempDir(), tool.name)
		t.Setenv(tool.env, missing)
		if p, err := tool.find(); err == nil || !strings.Contains(err.Error(), "make test") {
			t.Errorf("finding %s with %s=%s = %q, %v, want an error pointing at make test", tool.name, tool.env, missing, p, err)
		}
	}
}

func TestStartServer(t *testing.T) {
	t.Parallel()
	srv := storagetest.StartServer(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want a loopback URL", srv.Endpoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	locked := srv.NewBucket(t, true)
	for _, b := range []string{srv.Bucket, locked} {
		if _, err := srv.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b}); err != nil {
			t.Errorf("HeadBucket(%s) = %v, want nil", b, err)
		}
	}
	lock, err := srv.Client().GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &locked})
	if err != nil || lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != "Enabled" {
		t.Errorf("GetObjectLockConfiguration(%s) = %+v, %v, want enabled", locked, lock, err)
	}
	key := "k"
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key, Body: strings.NewReader("kept")}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	if _, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: &key}); err != nil {
		t.Errorf("HeadObject(%s) after Restart = %v, want the object kept", key, err)
	}
}
