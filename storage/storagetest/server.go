// Package storagetest gives facesync's tests a real S3-compatible server
// (versitygw on its posix backend) and the conformance suite every
// storage.Sink implementation passes.
package storagetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// EnvBinary names the variable through which `make test` tells tests where
// it installed versitygw.
const EnvBinary = "FACESYNC_TEST_VERSITYGW"

// Region is the region the test server answers for.
const Region = "us-east-1"

// Server is a versitygw process of a test's own on a loopback port, with
// its data in the test's temporary folder. It keeps its port and data
// across Stop and Restart.
type Server struct {
	proc // Endpoint, AccessKey, SecretKey; Kill, Client, NewBucket
	// Bucket is a bucket created at start, without object lock.
	Bucket string
	Dir    string

	bin  string
	port int
}

// StartServer starts versitygw on a free loopback port, waits until it
// answers, creates Bucket, and kills the server when the test ends. It
// fails the test with a clear message when versitygw is not installed; it
// never skips.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatalf("storagetest: %v", err)
	}
	s := &Server{proc: newProc(), Dir: tb.TempDir(), bin: bin}
	for _, d := range []string{s.dataDir(), s.versionDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatalf("storagetest: %v", err)
		}
	}
	if err := s.start(); err != nil {
		tb.Fatalf("storagetest: %v", err)
	}
	tb.Cleanup(s.Kill)
	s.Bucket = s.NewBucket(tb, false)
	return s
}

// Binary finds versitygw: $FACESYNC_TEST_VERSITYGW, else .tools/versitygw
// in the module root, else PATH.
func Binary() (string, error) { return findTool("versitygw", EnvBinary) }

// findTool finds a test server's binary: $env, else .tools/name in the
// module root (where `make test` installs it), else PATH.
func findTool(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s from %s: %w (run `make test`, which installs it)", name, env, err)
		}
		return p, nil
	}
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, ".tools", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", errors.New(name + " not found in $" + env + ", .tools/ or PATH (run `make test`, which installs it)")
}

func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func (s *Server) dataDir() string    { return filepath.Join(s.Dir, "data") }
func (s *Server) versionDir() string { return filepath.Join(s.Dir, "versions") }
func (s *Server) logFile() string    { return filepath.Join(s.Dir, "versitygw.log") }

// start runs versitygw; on the first start it picks a free port, trying
// again should another process take it between the check and the bind.
func (s *Server) start() error {
	for attempt := 0; attempt < 5; attempt++ {
		port := s.port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			port = p
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(s.bin,
			"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey,
			"--region", Region, "--quiet",
			"posix", "--versioning-dir", s.versionDir(), s.dataDir())
		up, err := s.launch(cmd, s.logFile(), "http://"+addr, func(exited <-chan struct{}) bool {
			return waitHTTP("http://"+addr+"/", exited, 15*time.Second, false)
		})
		if err != nil {
			return fmt.Errorf("start versitygw: %w", err)
		}
		if up {
			s.port = port
			return nil
		}
		if s.port != 0 {
			break
		}
	}
	log, _ := os.ReadFile(s.logFile())
	return fmt.Errorf("versitygw did not answer on loopback; its log:\n%s", log)
}

// waitHTTP waits until url answers (with 200 when needOK, else with any
// status), the process exits or d passes.
func waitHTTP(url string, exited <-chan struct{}, d time.Duration, needOK bool) bool {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if !needOK || resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Stop ends the server gracefully (SIGTERM) and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("versitygw ignored SIGTERM for 10s; killed")
	}
}

// Restart starts the server again on the same port and data.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("versitygw already runs")
	}
	return s.start()
}

// NewS3Client returns a path-style S3 client for an S3-compatible endpoint
// with static credentials, as facesync configures one for
// FACESYNC_S3_ENDPOINT.
func NewS3Client(endpoint, accessKey, secretKey string, optFns ...func(*s3.Options)) *s3.Client {
	opts := s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	}
	return s3.New(opts, optFns...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
