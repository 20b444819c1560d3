package perf

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

// The one app every benchmark uses. The secret is the fake provider's, not
// a real one.
const (
	appID     = "TIDA0001"
	appSecret = "perf-fake-secret-0001"
)

// envChild makes the test binary a child process of a benchmark (see
// noopChild, naiveChild and evidenceChild) rather than a test run.
const envChild = "FACESYNC_PERF_CHILD"

// Child roles.
const (
	childNoop     = "noop"
	childNaive    = "naive"
	childEvidence = "evidence"
)

func TestMain(m *testing.M) {
	switch role := os.Getenv(envChild); role {
	case "":
	case childNoop:
		os.Exit(noopChild())
	case childNaive:
		os.Exit(naiveChild())
	case childEvidence:
		os.Exit(evidenceChild())
	default:
		fmt.Fprintf(os.Stderr, "perf: unknown %s %q\n", envChild, role)
		os.Exit(2)
	}
	flag.Parse()
	if testing.Short() {
		shrink()
	}
	code := m.Run()
	printTable(os.Stdout)
	workertest.Cleanup()
	os.Exit(code)
}

// row is one line of the table printed at the end of the run.
type row struct {
	name, measured, reference, bar string
	pass                           string // "yes", "no" or "figure" for rows without a bar
}

var table struct {
	sync.Mutex
	rows []row
}

func addRow(r row) {
	table.Lock()
	defer table.Unlock()
	table.rows = append(table.rows, r)
}

// passFail writes a bar's outcome for the pass column.
func passFail(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// printTable prints every row measured in this run as one markdown table.
func printTable(w io.Writer) {
	table.Lock()
	defer table.Unlock()
	if len(table.rows) == 0 {
		return
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "\nfacesync benchmark table (%s, %d cores, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), memTotal())
	fmt.Fprintln(&buf, "| row | measured | reference | ratio / bar | pass |")
	fmt.Fprintln(&buf, "|---|---|---|---|---|")
	for _, r := range table.rows {
		fmt.Fprintf(&buf, "| %s | %s | %s | %s | %s |\n", r.name, r.measured, r.reference, r.bar, r.pass)
	}
	_, _ = w.Write(buf.Bytes())
}

// memTotal reads MemTotal from /proc/meminfo, for the table's heading.
func memTotal() string {
	v, err := procField("/proc/meminfo", "MemTotal:")
	if err != nil {
		return "memory unknown"
	}
	return fmt.Sprintf("%.1f GiB RAM", float64(v)/(1<<20))
}

// procField reads a "Name:  123 kB" line of a /proc file, in kB.
func procField(path, name string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", name, path)
}

// workerBinary returns the facesync binary under test.
func workerBinary(tb testing.TB) string {
	tb.Helper()
	path, err := workertest.Binary()
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// stack is what the worker processes run against: a redis-server of the
// benchmark's own, the fake provider served by this process, and
// versitygw.
type stack struct {
	redis *ticketcachetest.Server
	rdb   *redis.Client
	fake  *idasctest.Server
	s3    *storagetest.Server
	dir   string
	procs int // worker processes started so far, to name their logs
}

// newStack starts a stack; opts configure the fake provider, whose app
// list is set here.
func newStack(b *testing.B, opts idasctest.Options) *stack {
	b.Helper()
	opts.Apps = map[string]string{appID: appSecret}
	if opts.MaxRecords == 0 {
		opts.MaxRecords = 1 // the fake's request log is not used, only its counters
	}
	s := &stack{
		redis: ticketcachetest.StartServer(b),
		fake:  idasctest.NewServer(b, opts),
		s3:    storagetest.StartServer(b),
		dir:   b.TempDir(),
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr, PoolSize: 16})
	b.Cleanup(func() { _ = s.rdb.Close() })
	return s
}

// reset empties Redis between runs, so every run starts from no tasks, no
// records and no ticket.
func (s *stack) reset(tb testing.TB) {
	tb.Helper()
	if err := s.rdb.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatalf("flush redis: %v", err)
	}
}

// enqueue enqueues n decision-only orders with the tasks package, as a Go
// partner would, and returns their decision record keys.
func (s *stack) enqueue(tb testing.TB, n int) []string {
	tb.Helper()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr, PoolSize: 16})
	defer client.Close()
	keys := make([]string, n)
	const parallel = 8
	errs := make(chan error, parallel)
	for p := range parallel {
		go func() {
			var err error
			for i := p; i < n && err == nil; i += parallel {
				order := fmt.Sprintf("o%07d", i)
				keys[i] = orderstore.RecordKey(appID, order)
				_, err = tasks.Enqueue(context.Background(), client, tasks.FetchResult{AppID: appID, OrderNo: order, GetFile: tasks.GetFileNone})
			}
			errs <- err
		}()
	}
	for range parallel {
		if err := <-errs; err != nil {
			tb.Fatalf("enqueue: %v", err)
		}
	}
	return keys
}

// proc is one child process: a facesync worker or a reference server.
type proc = workertest.Proc

// workerEnv is the environment of a facesync worker process: only what it
// needs, so nothing from the caller's FACESYNC_* or AWS_* settings leaks in.
func (s *stack) workerEnv(concurrency int, extra ...string) []string {
	cmd := workertest.Command{RedisURL: "redis://" + s.redis.Addr + "/0", AppID: appID, Secret: appSecret, IdascURL: s.fake.URL, S3: s.s3}
	return cmd.Env(s.dir, append([]string{"FACESYNC_CONCURRENCY=" + strconv.Itoa(concurrency)}, extra...)...)
}

// start starts a child process with env; it is killed when the benchmark
// ends if it still runs.
func (s *stack) start(tb testing.TB, name string, env []string, path string, args ...string) *proc {
	tb.Helper()
	s.procs++
	return workertest.Start(tb, fmt.Sprintf("%s-%d", name, s.procs), env, path, args...)
}

// startWorker starts one facesync worker process.
func (s *stack) startWorker(tb testing.TB, concurrency int, extra ...string) *proc {
	tb.Helper()
	return s.start(tb, "facesync", s.workerEnv(concurrency, extra...), workerBinary(tb), "worker")
}

// startNoop starts the reference: a plain asynq server with a no-op
// handler, in a process of its own like a worker.
func (s *stack) startNoop(tb testing.TB, concurrency int) *proc {
	tb.Helper()
	env := append(os.Environ(), envChild+"="+childNoop,
		envNoopAddr+"="+s.redis.Addr, envNoopConcurrency+"="+strconv.Itoa(concurrency))
	return s.start(tb, "noop", env, os.Args[0], "-test.run=^$")
}

// startNaive starts row 1's reference: the naive correct handler
// (naiveChild), in a process of its own like a worker.
func (s *stack) startNaive(tb testing.TB, concurrency int) *proc {
	tb.Helper()
	env := append(os.Environ(), envChild+"="+childNaive,
		envNoopAddr+"="+s.redis.Addr, envNoopConcurrency+"="+strconv.Itoa(concurrency),
		envNaiveIdascURL+"="+s.fake.URL, envNaiveApp+"="+appID+"="+appSecret)
	return s.start(tb, "naive", env, os.Args[0], "-test.run=^$")
}

// stop ends the process with SIGTERM, as Kubernetes does, and fails the
// benchmark if it does not exit cleanly in time.
func stop(tb testing.TB, p *proc) {
	tb.Helper()
	_ = p.Signal(syscall.SIGTERM)
	if !p.Wait(30 * time.Second) {
		p.Kill()
		tb.Fatalf("%s did not exit within 30 s of SIGTERM; log:\n%s", p.Name, p.Tail(40))
	}
	if err := p.Err(); err != nil {
		tb.Fatalf("%s exited with %v; log:\n%s", p.Name, err, p.Tail(40))
	}
}

// pollInterval is how often completion is checked; it bounds the error of
// every elapsed time measured.
const pollInterval = 10 * time.Millisecond

// maxWait bounds every wait for a run to finish.
const maxWait = 3 * time.Minute

// waitFor polls done until it reports n, and returns the time it first did.
// It fails the benchmark when a process exits early or the wait exceeds
// maxWait.
func waitFor(tb testing.TB, procs []*proc, n int, done func() (int, error)) time.Time {
	tb.Helper()
	deadline := time.Now().Add(maxWait)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		got, err := done()
		if err != nil {
			tb.Fatalf("check progress: %v", err)
		}
		if got >= n {
			return time.Now()
		}
		for _, p := range procs {
			if p.Exited() {
				tb.Fatalf("%s exited early (%v) with %d of %d done; log:\n%s", p.Name, p.Err(), got, n, p.Tail(40))
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d done after %v", got, n, maxWait)
		}
		<-tick.C
	}
}

// recordCounter counts the decision records that exist among keys, for a
// warm-up and the check after a run. Orders finish roughly in queue order,
// so it remembers which exist and checks only a window of the first
// missing ones on each call.
func (s *stack) recordCounter(keys []string) func() (int, error) {
	left := append([]string(nil), keys...)
	found := 0
	const window = 256
	return func() (int, error) {
		ctx := context.Background()
		for len(left) > 0 {
			w := left[:min(window, len(left))]
			cmds := make([]*redis.IntCmd, len(w))
			pipe := s.rdb.Pipeline()
			for i, k := range w {
				cmds[i] = pipe.Exists(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return found, err
			}
			missing := left[:0:0]
			for i, c := range cmds {
				if c.Val() == 1 {
					found++
				} else {
					missing = append(missing, w[i])
				}
			}
			left = append(missing, left[len(w):]...)
			if len(missing) > 0 {
				break
			}
		}
		return found, nil
	}
}

// completedCounter counts the tasks asynq keeps as completed on the
// decision queue (tasks.Enqueue gives them a retention).
func (s *stack) completedCounter() func() (int, error) {
	key := "asynq:{" + tasks.QueueResult + "}:completed"
	return func() (int, error) {
		n, err := s.rdb.ZCard(context.Background(), key).Result()
		return int(n), err
	}
}

// runResult is one timed run: its throughput and the CPU each party used
// while the clock ran.
type runResult struct {
	rate      float64       // orders (tasks) per second
	workerCPU time.Duration // the worker processes, user and system
	redisCPU  time.Duration // redis-server
	selfCPU   time.Duration // this process: the fake provider and the polling
}

// perOrder returns d per order of a run of n, in microseconds.
func perOrder(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

// reportCPU reports a run's CPU per order with the given metric prefix.
func reportCPU(b *testing.B, prefix string, r runResult, n int) {
	b.ReportMetric(perOrder(r.workerCPU, n), prefix+"worker-CPU-µs/op")
	b.ReportMetric(perOrder(r.redisCPU, n), prefix+"redis-CPU-µs/op")
	b.ReportMetric(perOrder(r.selfCPU, n), prefix+"bench-CPU-µs/op")
}

// selfCPU returns the CPU this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU redis-server has used, from INFO cpu.
func (s *stack) redisCPU(tb testing.TB) time.Duration {
	tb.Helper()
	info, err := s.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatalf("redis INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("redis INFO cpu: %s: %v", k, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// timed runs procs started by startProcs until done reports n, and returns
// the run's throughput from the processes' start (their start-up
// included, as a scaled-up pod's would be) and the CPU used meanwhile.
func (s *stack) timed(b *testing.B, n int, done func() (int, error), startProcs func() []*proc) runResult {
	b.Helper()
	redis0, self0 := s.redisCPU(b), selfCPU()
	b.StartTimer()
	start := time.Now()
	ps := startProcs()
	end := waitFor(b, ps, n, done)
	b.StopTimer()
	r := runResult{rate: float64(n) / end.Sub(start).Seconds(), redisCPU: s.redisCPU(b) - redis0, selfCPU: selfCPU() - self0}
	for _, p := range ps {
		stop(b, p)
		r.workerCPU += p.Cmd.ProcessState.UserTime() + p.Cmd.ProcessState.SystemTime()
	}
	b.StartTimer()
	return r
}

// runWorkers enqueues n decision-only orders, then starts procs facesync
// worker processes and measures until asynq holds every task as completed
// (one ZCARD per poll, the same cheap count for every kind of run: looking
// for n records while the clock runs would cost Redis and this process
// more than the no-op run's count). Every decision record must exist at
// the end.
func (s *stack) runWorkers(b *testing.B, n, procs, concurrency int, extra ...string) runResult {
	b.Helper()
	b.StopTimer()
	workerBinary(b) // built before the clock starts
	s.reset(b)
	keys := s.enqueue(b, n)
	r := s.timed(b, n, s.completedCounter(), func() []*proc {
		ps := make([]*proc, procs)
		for i := range ps {
			ps[i] = s.startWorker(b, concurrency, extra...)
		}
		return ps
	})
	s.checkRecords(b, keys)
	return r
}

// runNaive is runWorkers for the naive handler (naiveChild), in one
// process.
func (s *stack) runNaive(b *testing.B, n, concurrency int) runResult {
	b.Helper()
	b.StopTimer()
	s.reset(b)
	keys := s.enqueue(b, n)
	r := s.timed(b, n, s.completedCounter(), func() []*proc {
		return []*proc{s.startNaive(b, concurrency)}
	})
	s.checkRecords(b, keys)
	return r
}

// checkRecords fails the benchmark unless every key exists: a run counts
// completed tasks, and a task completed without its record is no decision.
func (s *stack) checkRecords(tb testing.TB, keys []string) {
	tb.Helper()
	if got, err := s.recordCounter(keys)(); err != nil || got != len(keys) {
		tb.Fatalf("%d of %d decision records exist after the run (%v)", got, len(keys), err)
	}
}

// runNoop is runWorkers for the reference: the no-op asynq server, until
// asynq holds every task as completed.
func (s *stack) runNoop(b *testing.B, n, concurrency int) runResult {
	b.Helper()
	b.StopTimer()
	s.reset(b)
	s.enqueue(b, n)
	return s.timed(b, n, s.completedCounter(), func() []*proc {
		return []*proc{s.startNoop(b, concurrency)}
	})
}
