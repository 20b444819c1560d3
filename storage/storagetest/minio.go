package storagetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EnvMinIO names the variable through which `make test` tells tests where
// it installed MinIO. Lifecycle configuration needs it: versitygw answers
// NotImplemented to lifecycle reads.
const EnvMinIO = "FACESYNC_TEST_MINIO"

// MinIO is a single-drive MinIO server of a test's own on a loopback
// port, with its data in the test's temporary folder.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Dir       string

	cmd    *exec.Cmd
	exited chan struct{}
}

// MinIOBinary finds MinIO: $FACESYNC_TEST_MINIO, else .tools/minio in the
// module root, else PATH.
func MinIOBinary() (string, error) { return findTool("minio", EnvMinIO) }

// StartMinIO starts MinIO on free loopback ports (S3 and its console),
// waits until it is ready, and kills it when the test ends. It fails the
// test with a clear message when MinIO is not installed; it never skips.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		tb.Fatalf("storagetest: %v", err)
	}
	m := &MinIO{
		AccessKey: "facesync-test",
		SecretKey: "facesync-test-secret-" + randomHex(8),
		Dir:       tb.TempDir(),
	}
	if err := m.start(bin); err != nil {
		tb.Fatalf("storagetest: %v", err)
	}
	tb.Cleanup(m.Kill)
	return m
}

func (m *MinIO) logFile() string { return filepath.Join(m.Dir, "minio.log") }

func (m *MinIO) start(bin string) error {
	data, certs := filepath.Join(m.Dir, "data"), filepath.Join(m.Dir, "certs")
	for _, d := range []string{data, certs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		console, err := freePort()
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		log, err := os.OpenFile(m.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		// --certs-dir keeps MinIO out of $HOME/.minio; the environment
		// turns off what would reach the network or the console.
		cmd := exec.Command(bin, "server", "--quiet", "--anonymous",
			"--address", addr, "--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(console)),
			"--certs-dir", certs, data)
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+m.AccessKey,
			"MINIO_ROOT_PASSWORD="+m.SecretKey,
			"MINIO_REGION="+Region,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_CALLHOME_ENABLE=off",
		)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		log.Close()
		if err != nil {
			return fmt.Errorf("start minio: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		// /minio/health/ready answers 200 before the object layer and IAM
		// are up; /minio/health/cluster waits for the object layer, and a
		// first ListBuckets for the rest.
		endpoint := "http://" + addr
		if waitHTTP(endpoint+"/minio/health/cluster", exited, 60*time.Second, true) &&
			waitS3(NewS3Client(endpoint, m.AccessKey, m.SecretKey), exited, 30*time.Second) {
			m.cmd, m.exited, m.Endpoint = cmd, exited, endpoint
			return nil
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	log, _ := os.ReadFile(m.logFile())
	return fmt.Errorf("minio did not become ready on loopback; its log:\n%s", log)
}

// waitS3 waits until ListBuckets succeeds, the process exits or d passes.
func waitS3(c *s3.Client, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Kill ends the server at once, if it runs.
func (m *MinIO) Kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// Client returns an S3 client for the server.
func (m *MinIO) Client(optFns ...func(*s3.Options)) *s3.Client {
	return NewS3Client(m.Endpoint, m.AccessKey, m.SecretKey, optFns...)
}

// NewBucket creates a bucket with a fresh name, with object lock (and so
// versioning) enabled when lock is true.
func (m *MinIO) NewBucket(tb testing.TB, lock bool) string {
	tb.Helper()
	name := "fs-" + strings.ToLower(randomHex(8))
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if lock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Client().CreateBucket(ctx, in); err != nil {
		tb.Fatalf("storagetest: create bucket %s: %v", name, err)
	}
	return name
}
