// Package ticketcachetest gives tests of facesync's Redis users a real
// redis-server: a clean database per test on a shared server, or a server of
// their own that they can stop and restart.
package ticketcachetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvAddr names the variable through which `make test` hands every test
// binary the address of the redis-server it started.
const EnvAddr = "FACESYNC_TEST_REDIS_ADDR"

// databases is how many logical databases a test server has, so that every
// test across all packages gets a database of its own.
const databases = 4096

// DB is one clean logical database on a real redis-server.
type DB struct {
	Addr   string
	DB     int
	Client *redis.Client
}

// URL returns the database as a redis:// URL (FACESYNC_REDIS_URL form).
func (d *DB) URL() string { return fmt.Sprintf("redis://%s/%d", d.Addr, d.DB) }

var (
	sharedOnce sync.Once
	sharedAddr string
	sharedErr  error
)

// sharedServer returns the address from EnvAddr or, when it is unset, of a
// redis-server this test binary starts once and that dies with it.
func sharedServer() (string, error) {
	sharedOnce.Do(func() {
		if a := os.Getenv(EnvAddr); a != "" {
			sharedAddr = a
			return
		}
		dir, err := os.MkdirTemp("", "facesync-redis-")
		if err != nil {
			sharedErr = err
			return
		}
		srv, err := startServer(dir, 0)
		if err != nil {
			sharedErr = err
			return
		}
		sharedAddr = srv.Addr
	})
	return sharedAddr, sharedErr
}

// NewDB returns a flushed database of its own on the shared test server and
// flushes it again when the test ends. It fails the test with a clear
// message when no redis-server can be had; it never skips.
func NewDB(t testing.TB) *DB {
	t.Helper()
	addr, err := sharedServer()
	if err != nil {
		t.Fatalf("real redis-server needed: %v (run `make test`, which installs and starts one, or set %s)", err, EnvAddr)
	}
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	n, err := admin.Incr(ctx, "facesync:test:dbseq").Result()
	if err != nil {
		t.Fatalf("redis-server at %s: %v", addr, err)
	}
	db := &DB{Addr: addr, DB: 1 + int(n%(databases-1))}
	db.Client = redis.NewClient(&redis.Options{Addr: addr, DB: db.DB})
	if err := db.Client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush redis db %d: %v", db.DB, err)
	}
	t.Cleanup(func() {
		_ = db.Client.FlushDB(context.Background()).Err()
		_ = db.Client.Close()
	})
	return db
}

// Server is a redis-server of a test's own, for tests that stop and restart
// Redis. It keeps its port and data folder across restarts.
type Server struct {
	Addr string
	Dir  string
	Args []string
	port int
	cmd  *exec.Cmd
}

// StartServer starts a redis-server on a free loopback port with its data in
// a temporary folder; extra args are passed on the command line (for
// example "--appendonly", "yes"). It is killed when the test ends.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	srv, err := startServer(t.TempDir(), 0, args...)
	if err != nil {
		t.Fatalf("real redis-server needed: %v (run `make test`, which installs one)", err)
	}
	t.Cleanup(srv.Kill)
	return srv
}

// Shutdown stops the server with SHUTDOWN, which writes what it must to disk.
func (s *Server) Shutdown() error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	_ = c.Shutdown(context.Background()).Err() // the connection drops: no useful error
	err := s.cmd.Wait()
	s.cmd = nil
	if err != nil {
		return fmt.Errorf("redis-server exit: %w", err)
	}
	return nil
}

// Restart starts the server again on the same port and folder.
func (s *Server) Restart() error {
	n, err := startServer(s.Dir, s.port, s.Args...)
	if err != nil {
		return err
	}
	s.cmd = n.cmd
	return nil
}

// Kill ends the server at once, if it runs.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func startServer(dir string, port int, args ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (apt-get install redis-server)")
	}
	for attempt := 0; attempt < 5; attempt++ {
		p := port
		if p == 0 {
			if p, err = freePort(); err != nil {
				return nil, err
			}
		}
		argv := append([]string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(p),
			"--dir", dir, "--databases", strconv.Itoa(databases),
			"--save", "", "--logfile", filepath.Join(dir, "redis.log"),
		}, args...)
		cmd := exec.Command(bin, argv...)
		// The server dies with the test binary, even when it is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if waitPing(addr, 10*time.Second) {
			return &Server{Addr: addr, Dir: dir, Args: args, port: p, cmd: cmd}, nil
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if port != 0 {
			break
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	return nil, fmt.Errorf("redis-server did not answer on loopback; its log:\n%s", log)
}

func waitPing(addr string, d time.Duration) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// FreePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
