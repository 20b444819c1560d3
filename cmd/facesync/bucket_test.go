package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/facesync/facesync/storage/storagetest"
)

// TestBucketSetupCheckMinIO: on MinIO, with a rule of the bucket's owner,
// check fails before setup, setup keeps the owner's rule, a multipart
// rule MinIO drops is named, and check passes once set up; a lock longer
// than the retention fails it.
func TestBucketSetupCheckMinIO(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	mc := storagetest.StartMinIO(t)
	bucket := mc.NewBucket(t, false)
	client := mc.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: &bucket,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID: aws.String("owner-logs"), Status: types.ExpirationStatusEnabled,
			Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("logs/")},
			Expiration: &types.LifecycleExpiration{Days: aws.Int32(30)},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"FACESYNC_S3_BUCKET": bucket, "FACESYNC_S3_ENDPOINT": mc.Endpoint,
		"AWS_ACCESS_KEY_ID": mc.AccessKey, "AWS_SECRET_ACCESS_KEY": mc.SecretKey,
		"FACESYNC_EVIDENCE_RETENTION": "30",
	} {
		st.env[k] = v
	}

	code, out, stderr := st.run(t, "bucket", "check")
	if code != 1 || !strings.Contains(out, "owner-logs") || !strings.Contains(stderr, "no lifecycle rule aborts incomplete multipart uploads") ||
		!strings.Contains(stderr, "no lifecycle rule expires every object under evidence/") {
		t.Errorf("check before setup: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}

	code, out, stderr = st.run(t, "bucket", "setup")
	t.Logf("setup with the multipart rule on MinIO: exit %d\n%s%s", code, out, stderr)
	if code != 1 || !strings.Contains(stderr, "facesync-abort-multipart") || !strings.Contains(out, "owner-logs") {
		t.Errorf("setup with the multipart rule: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}

	st.env["FACESYNC_S3_MULTIPART_CLEANUP"] = "server"
	code, out, stderr = st.run(t, "bucket", "setup")
	t.Logf("bucket setup (cleanup by the server): exit %d\n%s%s", code, out, stderr)
	if code != 0 || !strings.Contains(out, "owner-logs") || !strings.Contains(out, "facesync-expire") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("setup: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	code, out2, stderr := st.run(t, "bucket", "setup")
	if code != 0 || !strings.Contains(out2, "configuration unchanged") {
		t.Errorf("setup again: exit %d, stdout %s, stderr %s", code, out2, stderr)
	}
	code, out, stderr = st.run(t, "bucket", "check")
	t.Logf("bucket check: exit %d\n%s%s", code, out, stderr)
	if code != 0 || !strings.Contains(out, "facesync-expire") || !lineWith(out, "owner-logs") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("check after setup: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}

	st.env["FACESYNC_S3_LOCK_MODE"], st.env["FACESYNC_S3_LOCK_DAYS"] = "GOVERNANCE", "60"
	code, _, stderr = st.run(t, "bucket", "check")
	if code != 1 || !strings.Contains(stderr, "FACESYNC_S3_LOCK_DAYS keeps evidence 60 days") {
		t.Errorf("check with a lock longer than the retention: exit %d, stderr %s", code, stderr)
	}
}

// TestBucketCheckVersitygw: a server without lifecycle reads fails the
// check (exit 1, not 2), saying so.
func TestBucketCheckVersitygw(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	code, out, stderr := st.run(t, "bucket", "check")
	t.Logf("bucket check on versitygw: exit %d\n%s%s", code, out, stderr)
	if code != 1 || !strings.Contains(stderr, "not supported by the server") {
		t.Errorf("check on versitygw: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if code, _, stderr := st.run(t, "bucket", "frob"); code != 2 || !strings.Contains(stderr, "bucket setup | facesync bucket check") {
		t.Errorf("bucket frob: exit %d, stderr %q", code, stderr)
	}
}

// TestLifecycleSettings: bad lifecycle settings are refused naming their
// variable, and the worker refuses to start when object lock (the
// setting or the bucket's default) outlives the retention.
func TestLifecycleSettings(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	lockBucket := st.s3.NewBucket(t, true)
	ctx := context.Background()
	if _, err := st.s3.Client().PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{
		Bucket: &lockBucket,
		ObjectLockConfiguration: &types.ObjectLockConfiguration{
			ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule:              &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeGovernance, Days: aws.Int32(40)}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		stderr string
	}{
		{"negative retention", map[string]string{"FACESYNC_EVIDENCE_RETENTION": "-1"}, []string{"bucket", "check"}, "FACESYNC_EVIDENCE_RETENTION"},
		{"retention not whole", map[string]string{"FACESYNC_EVIDENCE_RETENTION": "7d"}, []string{"worker"}, "FACESYNC_EVIDENCE_RETENTION"},
		{"retention too long", map[string]string{"FACESYNC_EVIDENCE_RETENTION": "99999"}, []string{"worker"}, "FACESYNC_EVIDENCE_RETENTION"},
		{"bad cleanup", map[string]string{"FACESYNC_S3_MULTIPART_CLEANUP": "never"}, []string{"bucket", "setup"}, "FACESYNC_S3_MULTIPART_CLEANUP"},
		{"receipts inside evidence", map[string]string{"FACESYNC_S3_RECEIPT_PREFIX": "evidence/receipts/"}, []string{"purge", "--app-id", "A", "--order-no", "O", "--reason", "r"}, "FACESYNC_S3_RECEIPT_PREFIX"},
		{"purge without reason", nil, []string{"purge", "--app-id", "A", "--order-no", "O"}, "--reason is required"},
		{"purge with a huge reason", nil, []string{"purge", "--app-id", "A", "--order-no", "O", "--reason", strings.Repeat("r", 1025)}, "at most 1024 bytes"},
		{"purge without order", nil, []string{"purge", "--reason", "r"}, "--app-id and --order-no (or --file) are required"},
		{"lock days outlive retention", map[string]string{"FACESYNC_EVIDENCE_RETENTION": "30", "FACESYNC_S3_LOCK_MODE": "GOVERNANCE", "FACESYNC_S3_LOCK_DAYS": "31"}, []string{"worker"},
			"FACESYNC_EVIDENCE_RETENTION: FACESYNC_S3_LOCK_DAYS (31) is longer than the evidence retention of 30 days"},
		{"bucket default outlives retention", map[string]string{"FACESYNC_EVIDENCE_RETENTION": "30", "FACESYNC_S3_BUCKET": lockBucket}, []string{"worker"},
			"FACESYNC_EVIDENCE_RETENTION: the bucket's default object-lock retention (40 days) is longer"},
	}
	for _, tt := range tests {
		code, _, errb := st.runWith(t, tt.env, tt.args...)
		if code != 2 || !strings.Contains(errb, tt.stderr) || strings.Count(strings.TrimSpace(errb), "\n") > 0 {
			t.Errorf("%s: exit %d, stderr %q, want 2 and one line with %q", tt.name, code, errb, tt.stderr)
		}
	}
}
