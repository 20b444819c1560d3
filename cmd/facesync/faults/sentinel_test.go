package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/redisconn"
	"github.com/facesync/facesync/worker/workertest"
)

// newStackOn is newStack on a Redis deployment of the test's own (Sentinel,
// TLS): the workers and commands get env instead of a plain
// FACESYNC_REDIS_URL, and the test's own clients are built from the same
// URL by the same code as facesync's.
func newStackOn(t *testing.T, app string, env ...string) *stack {
	t.Helper()
	s := &stack{t: t, app: app, secret: "sec-" + randomHex(12), redisEnv: env}
	var url, ca string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, redisconn.EnvURL+"="); ok {
			url = v
		}
		if v, ok := strings.CutPrefix(e, redisconn.EnvCAFile+"="); ok {
			ca = v
		}
	}
	rc, err := redisconn.Parse(url, ca)
	if err != nil {
		t.Fatal(err)
	}
	s.s3 = storagetest.StartServer(t)
	s.s3c = s.s3.Client()
	s.prov = newProvider(idasctest.New(idasctest.Options{Apps: map[string]string{app: s.secret}}))
	srv := httptest.NewServer(s.prov)
	t.Cleanup(srv.Close)
	s.prov.URL = srv.URL
	s.rdb = rc.NewClient()
	t.Cleanup(func() { _ = s.rdb.Close() })
	if s.store, err = orderstore.New(s.rdb, orderstore.Config{}); err != nil {
		t.Fatal(err)
	}
	s.client = asynq.NewClientFromRedisClient(s.rdb)
	s.insp = asynq.NewInspectorFromRedisClient(s.rdb)
	return s
}

// runCommand runs a facesync command with the stack's environment and
// returns its exit code, stdout and stderr.
func (s *stack) runCommand(ctx context.Context, args ...string) (int, string, string) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = s.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	return -1, out.String(), err.Error()
}

var httpAddrRE = regexp.MustCompile(`"msg":"worker started".*"http_addr":"([^"]+)"`)

// httpAddr is the address of a worker's /readyz, from its start line.
func httpAddr(t *testing.T, w *workertest.Proc) string {
	t.Helper()
	m := httpAddrRE.FindStringSubmatch(w.Output())
	if m == nil {
		t.Fatalf("%s logged no http_addr", w.Name)
	}
	return m[1]
}

// traffic enqueues orders one `facesync enqueue` process at a time, as an
// operator or a cron job would, and keeps those the command confirmed
// (exit 0: in Sentinel mode a replica holds the task).
type traffic struct {
	s      *stack
	prefix string

	mu        sync.Mutex
	confirmed []order
	tried     []string
	refused   []string    // orders whose enqueue exited 2, with the line
	okTimes   []time.Time // when each confirmed enqueue was started
	stop      chan struct{}
	done      chan struct{}
}

func (s *stack) startTraffic(prefix string, pause time.Duration) *traffic {
	tr := &traffic{s: s, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			default:
			}
			no := fmt.Sprintf("%s-%04d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			started := time.Now()
			code, out, errOut := s.runCommand(ctx, "enqueue", "--app-id", s.app, "--order-no", no)
			cancel()
			tr.mu.Lock()
			tr.tried = append(tr.tried, no)
			if code == 0 && strings.Contains(out, "enqueued "+s.app+":"+no) {
				tr.confirmed = append(tr.confirmed, order{orderNo: no, status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored})
				tr.okTimes = append(tr.okTimes, started)
			} else {
				tr.refused = append(tr.refused, fmt.Sprintf("%s exit %d: %s", no, code, strings.TrimSpace(errOut)))
			}
			tr.mu.Unlock()
			time.Sleep(pause)
		}
	}()
	return tr
}

func (tr *traffic) end() {
	close(tr.stop)
	<-tr.done
}

// firstOKAfter is the start of the first confirmed enqueue started after
// t.
func (tr *traffic) firstOKAfter(t time.Time) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, at := range tr.okTimes {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (tr *traffic) triedOrders() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.tried...)
}

// recordWatch polls the records of every tried order and remembers when
// each first appeared and what it said then: for the figure "seconds from
// a failover to the next record written", and to check that no decision
// is written twice in effect (the one a partner could have read first is
// the one that stays).
type recordWatch struct {
	mu    sync.Mutex
	first map[string]seen
	stop  chan struct{}
	done  chan struct{}
}

type seen struct {
	at        time.Time
	decision  string // what a partner acts on: status, code, the provider's answer
	decidedAt string
}

func decisionOf(r *orderstore.Record) string {
	return strings.Join([]string{r.Status, r.Code, r.Msg, r.BizSeqNo, r.Similarity, r.LiveRate}, "|")
}

func (s *stack) watchRecords(tr *traffic) *recordWatch {
	rw := &recordWatch{first: map[string]seen{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		for {
			select {
			case <-rw.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, no := range tr.triedOrders() {
				rw.mu.Lock()
				_, ok := rw.first[no]
				rw.mu.Unlock()
				if ok {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r, err := s.record(ctx, no)
				cancel()
				if err != nil {
					break // Redis failing over: try again next round
				}
				if r != nil {
					rw.mu.Lock()
					rw.first[no] = seen{at: time.Now(), decision: decisionOf(r), decidedAt: r.DecidedAt}
					rw.mu.Unlock()
				}
			}
		}
	}()
	return rw
}

func (rw *recordWatch) end() {
	close(rw.stop)
	<-rw.done
}

// firstAfter is when the first record that appeared after t appeared.
func (rw *recordWatch) firstAfter(t time.Time) (time.Time, bool) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	var best time.Time
	for _, v := range rw.first {
		if v.at.After(t) && (best.IsZero() || v.at.Before(best)) {
			best = v.at
		}
	}
	return best, !best.IsZero()
}

func (rw *recordWatch) count() int {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return len(rw.first)
}

// readyWatch polls a worker's /readyz and keeps every change of answer.
type readyWatch struct {
	mu      sync.Mutex
	changes []readyChange
	stop    chan struct{}
	done    chan struct{}
}

type readyChange struct {
	at   time.Time
	code int // 0: no answer
}

func watchReady(addr string) *readyWatch {
	rw := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	hc := &http.Client{Timeout: 4 * time.Second}
	go func() {
		defer close(rw.done)
		last := -1
		for {
			code := 0
			if resp, err := hc.Get("http://" + addr + "/readyz"); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code != last {
				rw.mu.Lock()
				rw.changes = append(rw.changes, readyChange{time.Now(), code})
				rw.mu.Unlock()
				last = code
			}
			select {
			case <-rw.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return rw
}

func (rw *readyWatch) end() {
	close(rw.stop)
	<-rw.done
}

// after returns the first time after t that /readyz answered code.
func (rw *readyWatch) after(t time.Time, code int) (time.Time, bool) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	for _, c := range rw.changes {
		if c.at.After(t) && c.code == code {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// TestSentinelFailover runs two worker processes on a real Sentinel
// deployment (a master, two replicas, three sentinels) with orders
// enqueued by `facesync enqueue` all along, while (a) SENTINEL FAILOVER
// moves the master and then (b) the new master gets SIGKILL. Every order
// whose enqueue the command confirmed ends with its record and its
// evidence byte for byte, both workers live through it, the app's token is
// minted at most once more than without failovers, no decision changes
// once a partner could read it, and /readyz answers 503 after the kill and
// 200 again once a new master is in place.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := ticketcachetest.StartSentinels(t, ticketcachetest.SentinelOptions{Replicas: 2, Password: "pw-" + randomHex(6)})
	s := newStackOn(t, "TIDAHA01", redisconn.EnvURL+"="+sn.URL(0))
	w1 := s.startWorker("FACESYNC_CONCURRENCY=8")
	w2 := s.startWorker("FACESYNC_CONCURRENCY=8")
	ready := watchReady(httpAddr(t, w1))
	defer ready.end()

	tr := s.startTraffic("ha", 50*time.Millisecond)
	watch := s.watchRecords(tr)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			tr.end()
			watch.end()
		}
	}
	defer stop()
	ctx := t.Context()
	eventually(t, time.Minute, "10 records before the first failover", func() bool { return watch.count() >= 10 })

	// (a) A planned failover.
	t0 := time.Now()
	old, err := sn.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	master, err := sn.WaitNewMaster(ctx, old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tMaster := time.Since(t0)
	eventually(t, time.Minute, "a record after SENTINEL FAILOVER", func() bool { _, ok := watch.firstAfter(t0.Add(100 * time.Millisecond)); return ok })
	eventually(t, time.Minute, "a confirmed enqueue after SENTINEL FAILOVER", func() bool { _, ok := tr.firstOKAfter(t0); return ok })
	rec, _ := watch.firstAfter(t0.Add(100 * time.Millisecond))
	enq, _ := tr.firstOKAfter(t0)
	t.Logf("(a) SENTINEL FAILOVER: new master %s after %.1fs; next record written after %.1fs; next confirmed enqueue after %.1fs",
		master, tMaster.Seconds(), rec.Sub(t0).Seconds(), enq.Sub(t0).Seconds())

	// Both replicas back (the old master turned replica), so that a kill
	// of the master leaves one to promote and one to acknowledge writes.
	if err := sn.WaitReplicas(ctx, master, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	settled := time.Since(t0)
	if down, ok := ready.after(t0, http.StatusServiceUnavailable); ok {
		t.Logf("(a) /readyz answered 503 %.1fs after SENTINEL FAILOVER", down.Sub(t0).Seconds())
	} else {
		t.Logf("(a) /readyz answered 200 throughout SENTINEL FAILOVER")
	}

	// (b) The master dies.
	t1 := time.Now()
	killed, err := sn.KillMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	master, err = sn.WaitNewMaster(ctx, killed, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tMaster = time.Since(t1)
	eventually(t, time.Minute, "a record after the SIGKILL", func() bool { _, ok := watch.firstAfter(t1.Add(100 * time.Millisecond)); return ok })
	eventually(t, time.Minute, "a confirmed enqueue after the SIGKILL", func() bool { _, ok := tr.firstOKAfter(t1); return ok })
	eventually(t, time.Minute, "/readyz 503 then 200 after the SIGKILL", func() bool {
		down, ok := ready.after(t1, http.StatusServiceUnavailable)
		if !ok {
			return false
		}
		_, ok = ready.after(down, http.StatusOK)
		return ok
	})
	rec, _ = watch.firstAfter(t1.Add(100 * time.Millisecond))
	enq, _ = tr.firstOKAfter(t1)
	down, _ := ready.after(t1, http.StatusServiceUnavailable)
	up, _ := ready.after(down, http.StatusOK)
	t.Logf("(b) SIGKILL of the master: new master %s after %.1fs; next record written after %.1fs; next confirmed enqueue after %.1fs; /readyz 503 at %.1fs, 200 again at %.1fs",
		master, tMaster.Seconds(), rec.Sub(t1).Seconds(), enq.Sub(t1).Seconds(), down.Sub(t1).Seconds(), up.Sub(t1).Seconds())

	time.Sleep(2 * time.Second) // traffic on the new master
	stop()

	tr.mu.Lock()
	confirmed, refused, tried := tr.confirmed, tr.refused, len(tr.tried)
	tr.mu.Unlock()
	t.Logf("%d orders enqueued by the command: %d confirmed, %d refused with exit 2 (not counted as enqueued); replicas back %.1fs after (a)",
		tried, len(confirmed), len(refused), settled.Seconds())
	for _, r := range first(refused, 5) {
		t.Logf("  refused: %s", r)
	}
	for _, r := range refused {
		if strings.Count(strings.TrimSpace(r), "\n") > 0 || !strings.Contains(r, "exit 2") {
			t.Errorf("a refused enqueue did not end with exit 2 and one line: %s", r)
		}
	}
	recs := s.check(confirmed, 3*time.Minute)
	t.Logf("0 of %d confirmed orders lost: every one has its record and its evidence", len(confirmed))

	// A record read from the old master while the sentinels still named
	// it may be lost with it and written again by the retry: a later
	// decided_at, never another decision.
	watch.mu.Lock()
	rewritten := 0
	for no, r := range recs {
		f, ok := watch.first[no]
		if !ok {
			continue
		}
		if f.decision != decisionOf(r) {
			t.Errorf("decision of %s changed after it appeared: first %s, now %s", no, f.decision, decisionOf(r))
		}
		if f.decidedAt != r.DecidedAt {
			rewritten++
		}
	}
	watch.mu.Unlock()
	t.Logf("no decision changed; %d records written again (same decision, later decided_at) after the old master lost them", rewritten)
	for _, w := range []*workertest.Proc{w1, w2} {
		if w.Exited() {
			t.Errorf("%s exited: %v", w.Name, w.Err())
		}
	}
	mints := s.prov.TokenMints(s.app)
	t.Logf("token mints for %s: %d (ticket mints %d)", s.app, mints, s.prov.TicketMints(s.app))
	if mints < 1 || mints > 2 {
		t.Errorf("token mints = %d, want 1, or 2 with one extra from a failover", mints)
	}
	for _, w := range []*workertest.Proc{w1, w2} {
		// One line per burst, not one per task: a few bursts per
		// failover, never one line per order.
		if n := strings.Count(w.Output(), "redis unavailable (failing over?)"); n > 10 {
			t.Errorf("%s logged the failover %d times, want once per burst", w.Name, n)
		}
	}
}

// TestRedisTLS runs an order through a worker process and `facesync
// enqueue` over rediss:// with a CA made by the test; `facesync status`
// with a CA that did not sign the server's certificate exits 2 with one
// line naming FACESYNC_REDIS_CA_FILE.
func TestRedisTLS(t *testing.T) {
	t.Parallel()
	srv := ticketcachetest.StartTLSServer(t)
	s := newStackOn(t, "TIDATLS1", redisconn.EnvURL+"="+srv.URL(0), redisconn.EnvCAFile+"="+srv.CAFile)
	s.startWorker()
	o := order{orderNo: "tls-1", status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	ctx := t.Context()
	if code, out, errOut := s.runCommand(ctx, "enqueue", "--app-id", s.app, "--order-no", o.orderNo); code != 0 {
		t.Fatalf("facesync enqueue over rediss:// exit %d: %s%s", code, out, errOut)
	}
	s.check([]order{o}, time.Minute)
	if code, out, errOut := s.runCommand(ctx, "status", "--app-id", s.app, "--order-no", o.orderNo); code != 0 || !strings.Contains(out, `"status": "passed"`) {
		t.Errorf("facesync status over rediss:// exit %d: %s%s", code, out, errOut)
	}

	wrong := filepath.Join(t.TempDir(), "other-ca.pem")
	if _, _, err := ticketcachetest.WriteCA(wrong); err != nil {
		t.Fatal(err)
	}
	s.redisEnv = []string{redisconn.EnvURL + "=" + srv.URL(0), redisconn.EnvCAFile + "=" + wrong}
	code, _, errOut := s.runCommand(ctx, "status", "--app-id", s.app, "--order-no", o.orderNo)
	line := strings.TrimSpace(errOut)
	if code != 2 || strings.Contains(line, "\n") || !strings.Contains(line, redisconn.EnvCAFile) || !strings.Contains(line, "not signed by a CA") {
		t.Errorf("facesync status with a wrong CA: exit %d, stderr %q; want exit 2 and one line naming %s", code, errOut, redisconn.EnvCAFile)
	}
	t.Logf("wrong CA: exit %d: %s", code, line)
}
