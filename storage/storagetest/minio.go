package storagetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EnvMinIO names the variable through which `make test` tells tests where
// it installed MinIO. Lifecycle configuration needs it: versitygw answers
// NotImplemented to lifecycle reads.
const EnvMinIO = "FACESYNC_TEST_MINIO"

// MinIO is a single-drive MinIO server of a test's own on a loopback
// port, with its data in the test's temporary folder.
type MinIO struct {
	proc // Endpoint, AccessKey, SecretKey; Kill, Client, NewBucket
	Dir  string
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
	m := &MinIO{proc: newProc(), Dir: tb.TempDir()}
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
		// /minio/health/ready answers 200 before the object layer and IAM
		// are up; /minio/health/cluster waits for the object layer, and a
		// first ListBuckets for the rest.
		endpoint := "http://" + addr
		up, err := m.launch(cmd, m.logFile(), endpoint, func(exited <-chan struct{}) bool {
			return waitHTTP(endpoint+"/minio/health/cluster", exited, 60*time.Second, true) &&
				waitS3(NewS3Client(endpoint, m.AccessKey, m.SecretKey), exited, 30*time.Second)
		})
		if err != nil {
			return fmt.Errorf("start minio: %w", err)
		}
		if up {
			return nil
		}
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
