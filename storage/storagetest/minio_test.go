package storagetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/facesync/facesync/storage/storagetest"
)

func TestStartMinIO(t *testing.T) {
	t.Parallel()
	m := storagetest.StartMinIO(t)
	if !strings.HasPrefix(m.Endpoint, "http://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want a loopback URL", m.Endpoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	locked := m.NewBucket(t, true)
	lock, err := m.Client().GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &locked})
	if err != nil || lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != "Enabled" {
		t.Errorf("GetObjectLockConfiguration(%s) = %+v, %v, want enabled", locked, lock, err)
	}
	plain := m.NewBucket(t, false)
	loc, err := m.Client().GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &plain})
	if err != nil || (loc.LocationConstraint != "" && string(loc.LocationConstraint) != storagetest.Region) {
		t.Errorf("GetBucketLocation(%s) = %+v, %v, want %s", plain, loc, err, storagetest.Region)
	}
	m.Kill()
	if _, err := m.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &plain}); err == nil {
		t.Errorf("HeadBucket after Kill = nil, want an error")
	}
}
