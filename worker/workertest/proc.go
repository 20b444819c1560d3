package workertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinary names the variable that points tests at an already built
// facesync binary (`make test` builds one) instead of building their own.
const EnvBinary = "FACESYNC_TEST_BINARY"

var built struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the facesync binary under test: EnvBinary's, or one built
// once per test process into a temporary folder (removed by Cleanup).
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	built.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("the go command is needed to build facesync (or set %s): %w", EnvBinary, err)
			return
		}
		dir, err := os.MkdirTemp("", "facesync-bin-")
		if err != nil {
			built.err = err
			return
		}
		path := filepath.Join(dir, "facesync")
		out, err := exec.Command(gobin, "build", "-o", path, "github.com/facesync/facesync/cmd/facesync").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("build facesync: %v\n%s", err, out)
			return
		}
		built.path = path
	})
	return built.path, built.err
}

// Cleanup removes a binary Binary built; call it at the end of TestMain.
func Cleanup() {
	if built.path != "" {
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
}

// Proc is a child process whose stdout and stderr go to a log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of its log

	done chan struct{}
	err  error
}

// Start starts path with args and env (nothing of the test process's own
// environment is passed), logging to a file in a test temp dir. The
// process is killed when the test ends, or when the test binary dies.
func Start(tb testing.TB, name string, env []string, path string, args ...string) *Proc {
	tb.Helper()
	logPath := filepath.Join(tb.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(p.Kill)
	return p
}

// WaitLog waits up to d until the log contains s; it fails the test when
// the process exits first or the time runs out.
func (p *Proc) WaitLog(tb testing.TB, s string, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.Output(), s) {
		select {
		case <-p.done:
			tb.Fatalf("%s exited (%v) before logging %q:\n%s", p.Name, p.err, s, p.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not log %q within %v:\n%s", p.Name, s, d, p.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL, if it runs, and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit, reporting whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Err is the process's exit, once Wait reported it exited.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output is everything the process logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail is the last n lines of the log.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CleanEnv is a child's base environment: PATH, home as HOME, and AWS's
// shared files and metadata service out of reach, so that no FACESYNC_ or
// AWS_ variable of the machine leaks into a test.
func CleanEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}
