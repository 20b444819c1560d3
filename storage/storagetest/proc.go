package storagetest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// proc is what versitygw and MinIO have alike: the endpoint and
// credentials of an S3-compatible server of a test's own, and its process.
type proc struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// newProc returns a proc with the tests' access key and a fresh secret.
func newProc() proc {
	return proc{AccessKey: "facesync-test", SecretKey: "facesync-test-secret-" + randomHex(8)}
}

// launch starts cmd with its output appended to logFile, to die with the
// test binary even when that is killed, and keeps it as the running
// process at endpoint once ready says it answers. ready watches exited,
// which is closed when the process ends. A process that does not come up
// is killed, and launch reports false.
func (p *proc) launch(cmd *exec.Cmd, logFile, endpoint string, ready func(exited <-chan struct{}) bool) (bool, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return false, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if !ready(exited) {
		_ = cmd.Process.Kill()
		<-exited
		return false, nil
	}
	p.cmd, p.exited, p.Endpoint = cmd, exited, endpoint
	return true, nil
}

// Kill ends the server at once, if it runs.
func (p *proc) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// Client returns an S3 client for the server.
func (p *proc) Client(optFns ...func(*s3.Options)) *s3.Client {
	return NewS3Client(p.Endpoint, p.AccessKey, p.SecretKey, optFns...)
}

// NewBucket creates a bucket with a fresh name, with object lock (and so
// versioning) enabled when lock is true.
func (p *proc) NewBucket(tb testing.TB, lock bool) string {
	tb.Helper()
	name := "fs-" + strings.ToLower(randomHex(8))
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if lock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Client().CreateBucket(ctx, in); err != nil {
		tb.Fatalf("storagetest: create bucket %s: %v", name, err)
	}
	return name
}

// Versions lists every object version and delete marker under prefix, as
// "key@version" and "key@version (delete marker)": what a purge must have
// left nothing of.
func Versions(tb testing.TB, c *s3.Client, bucket, prefix string) []string {
	tb.Helper()
	var out []string
	in := &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		page, err := c.ListObjectVersions(ctx, in)
		cancel()
		if err != nil {
			tb.Fatalf("storagetest: ListObjectVersions(%s): %v", prefix, err)
		}
		for _, v := range page.Versions {
			out = append(out, aws.ToString(v.Key)+"@"+aws.ToString(v.VersionId))
		}
		for _, m := range page.DeleteMarkers {
			out = append(out, aws.ToString(m.Key)+"@"+aws.ToString(m.VersionId)+" (delete marker)")
		}
		if !aws.ToBool(page.IsTruncated) {
			return out
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}
