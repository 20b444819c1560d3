// Command facesync fetches WeBank FaceID (人脸核身) results and evidence for
// partner backends: `facesync worker` runs a worker pod; enqueue, status and
// verify are the operator's tools; fake-idasc and demo run it all locally.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Exit codes, the same for every command.
const (
	exitOK    = 0 // done
	exitNo    = 1 // the answer is no: no record, a mismatch
	exitError = 2 // usage, configuration or infrastructure error
)

func main() {
	// go-redis logs connection trouble on its own; commands say it in
	// their one line instead. A worker routes it to zap once started.
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(NewMain().Run(ctx, os.Args[1:]))
}

// Main is the program: the commands, their streams and environment, so
// tests run the real thing in-process.
type Main struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	mu        sync.Mutex
	httpAddr  string // the worker's bound metrics address, once listening
	readyOnce sync.Once
	ready     chan struct{} // closed when the worker is serving
}

// NewMain returns a Main on the process's streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// Ready is closed once `worker` has started serving.
func (m *Main) Ready() <-chan struct{} {
	m.readyOnce.Do(func() { m.ready = make(chan struct{}) })
	return m.ready
}

func (m *Main) markReady() {
	m.Ready()
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.ready:
	default:
		close(m.ready)
	}
}

// HTTPAddr is the address the worker's /metrics, /healthz and /readyz
// listen on, once Ready is closed.
func (m *Main) HTTPAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.httpAddr
}

// exitErr carries a command's exit code; its message is the one line on
// stderr.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitErr{exitError, fmt.Errorf(format, args...)}
}
func noErr(format string, args ...any) error { return &exitErr{exitNo, fmt.Errorf(format, args...)} }
func infraErr(err error) error               { return &exitErr{exitError, err} }

const usage = `usage: facesync <command> [flags]

commands:
  worker                                  run a worker pod (configuration from FACESYNC_* variables)
  enqueue --app-id A --order-no O [--get-file 1]
  enqueue --file F                        one app_id,order_no[,get_file] per line
  status  --app-id A --order-no O         print the decision record (exit 1 if none)
  verify  --app-id A --order-no O         check stored evidence against its manifest (exit 1 on mismatch)
  requeue --app-id A --order-no O         run an order's archived tasks again now (exit 1 if none)
  requeue --archived [--app-id A]         run every archived task of an unfinished order again now
  verify  --app-id A --order-no O [--operator NAME]
                                          check stored evidence against its manifest (exit 1 on mismatch)
  purge   --app-id A --order-no O --reason TEXT [--operator NAME] [--bypass-governance]
  purge   --file F --reason TEXT          delete orders' evidence, record, keys and tasks; write receipts
  bucket  setup | check                   write / check the bucket's lifecycle rules
  fake-idasc --addr 127.0.0.1:8081        run the provider simulator
  demo                                    run everything in one process on embedded defaults
  api                                     run the partner HTTP API on FACESYNC_API_ADDR (keys from FACESYNC_API_KEYS_FILE)
  api-key new --apps A[,B] [--id KEY_ID]  print a new API key once and its FACESYNC_API_KEYS_FILE line

exit codes: 0 done, 1 the answer is no, 2 usage, configuration or infrastructure error
`

// Run runs one command and returns its exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return exitError
	}
	cmds := map[string]func(context.Context, []string) error{
		"worker":     m.runWorker,
		"enqueue":    m.runEnqueue,
		"status":     m.runStatus,
		"verify":     m.runVerify,
		"requeue":    m.runRequeue,
		"fake-idasc": m.runFakeIdasc,
		"demo":       m.runDemo,
		"api":        m.runAPI,
		"api-key":    m.runAPIKey,
		"purge":      m.runPurge,
		"bucket":     m.runBucket,
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		fmt.Fprint(m.Stdout, usage)
		return exitOK
	}
	run, ok := cmds[name]
	if !ok {
		fmt.Fprintf(m.Stderr, "facesync: unknown command %q (facesync help lists them)\n", name)
		return exitError
	}
	err := run(ctx, args[1:])
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(m.Stderr, "facesync %s: %v\n", name, err)
	var e *exitErr
	if errors.As(err, &e) {
		return e.code
	}
	return exitError
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
