package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/ticketcache"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

const (
	testApp    = "TIDA0001"
	testSecret = "app-secret-never-logged"
)

// lockedBuffer is a buffer several goroutines may write logs into.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stack is one test's Redis database, fake provider and bucket, and the
// environment a facesync command sees.
type stack struct {
	db   *ticketcachetest.DB
	fake *idasctest.Server
	s3   *storagetest.Server
	env  map[string]string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	st := &stack{db: ticketcachetest.NewDB(t), s3: storagetest.StartServer(t)}
	st.fake = idasctest.NewServer(t, idasctest.Options{Apps: map[string]string{testApp: testSecret}})
	st.env = workertest.Command{RedisURL: st.db.URL(), AppID: testApp, Secret: testSecret, IdascURL: st.fake.URL, S3: st.s3}.Vars()
	st.env["FACESYNC_LOG_LEVEL"] = "debug"
	return st
}

// run runs one command to its end and returns exit code, stdout, stderr.
func (st *stack) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return st.runWith(t, nil, args...)
}

// runWith is run with the variables of env set over the stack's.
func (st *stack) runWith(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	vars := maps.Clone(st.env)
	maps.Copy(vars, env)
	var out, errb lockedBuffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := m.Run(ctx, args)
	return code, out.String(), errb.String()
}

// running is a command's Main (worker, api) running in this process.
type running struct {
	name string
	m    *Main
	logs *lockedBuffer
	stop context.CancelFunc
	done chan int
}

func (st *stack) startWorker(t *testing.T) *running { return st.start(t, "worker") }

// start runs the long-running command name on the stack's environment,
// returns once it is ready, and shuts it down when the test ends.
func (st *stack) start(t *testing.T, name string) *running {
	t.Helper()
	logs := &lockedBuffer{}
	m := &Main{Stdout: io.Discard, Stderr: logs, Getenv: func(k string) string { return st.env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	w := &running{name: name, m: m, logs: logs, stop: cancel, done: make(chan int, 1)}
	go func() { w.done <- m.Run(ctx, []string{name}) }()
	select {
	case <-m.Ready():
	case code := <-w.done:
		t.Fatalf("%s exited with %d before it was ready: %s", name, code, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready after 30s: %s", name, logs.String())
	}
	t.Cleanup(func() { w.shutdown(t) })
	return w
}

// shutdown signals the command and checks that it exits with 0 within
// 30 s; it may be called again.
func (w *running) shutdown(t *testing.T) {
	w.stop()
	select {
	case code := <-w.done:
		if code != 0 {
			t.Errorf("%s exit code %d, want 0: %s", w.name, code, w.logs.String())
		}
		w.done <- code
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of its shutdown", w.name)
	}
}

func (st *stack) record(t *testing.T, orderNo string) *orderstore.Record {
	t.Helper()
	store, err := orderstore.New(st.db.Client, orderstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := workertest.ReadRecord(context.Background(), store, testApp, orderNo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEndToEndThreeWorkers(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.env["FACESYNC_RESULT_WAIT"] = "3s"
	st.env["FACESYNC_EVIDENCE_WAIT"] = "3s"
	workers := []*running{st.startWorker(t), st.startWorker(t), st.startWorker(t)}

	// 50 orders: the scenario is in the order number (idasctest tokens).
	type want struct{ status, code, evidence string }
	orders := map[string]want{}
	kinds := []struct {
		suffix string
		want   want
	}{
		{"", want{"passed", "0", "stored"}},
		{"-f66660015", want{"failed", "66660015", "stored"}},
		{"-nr2", want{"passed", "0", "stored"}},
		{"-e500x2", want{"passed", "0", "stored"}},
		{"-tr1-esc-lb", want{"passed", "0", "stored"}},
		{"-png-num-rf", want{"passed", "0", "stored"}},
		{"-nov", want{"passed", "0", "unavailable"}},
		{"-h404", want{"error", "provider_http_4xx", "skipped"}},
		{"-evtr1", want{"passed", "0", "stored"}},
		{"-nr99", want{"error", "no_result", "skipped"}},
	}
	for i := 0; i < 50; i++ {
		k := kinds[i%len(kinds)]
		orderNo := fmt.Sprintf("o%02d%s", i, k.suffix)
		orders[orderNo] = k.want
		if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", orderNo); code != 0 {
			t.Fatalf("enqueue %s: exit %d: %s", orderNo, code, stderr)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for orderNo, w := range orders {
		var r *orderstore.Record
		for {
			r = st.record(t, orderNo)
			if r != nil && r.Evidence.Status != orderstore.EvidencePending {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s not final by the deadline: %+v", orderNo, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.Status != w.status || r.Code != w.code || r.Evidence.Status != w.evidence {
			t.Errorf("order %s: %s %s evidence %s, want %s %s evidence %s", orderNo, r.Status, r.Code, r.Evidence.Status, w.status, w.code, w.evidence)
		}
	}

	// The evidence fetch never comes earlier than the delay after the decision.
	decided := map[string]time.Time{}
	for _, q := range st.fake.Requests() {
		if q.GetFile == "" && q.Code != "" && q.Code != "66660011" && q.Code != "400101" {
			if _, ok := decided[q.OrderNo]; !ok {
				decided[q.OrderNo] = q.Time
			}
		}
	}
	for _, q := range st.fake.Requests() {
		if q.GetFile != "" {
			if d, ok := decided[q.OrderNo]; !ok || q.Time.Sub(d) < time.Second {
				t.Errorf("order %s: evidence request %v after its decision, want at least 1s", q.OrderNo, q.Time.Sub(d))
			}
		}
	}
	if tm, tk := st.fake.TokenMints(testApp), st.fake.TicketMints(testApp); tm != 1 || tk != 1 {
		t.Errorf("token mints %d, ticket mints %d across three workers, want 1 and 1", tm, tk)
	}
	if n := st.fake.RejectedWithDeadTicket(testApp); n != 0 {
		t.Errorf("%d requests signed with a dead ticket", n)
	}

	// Nothing secret in any log line: the secret, the token and ticket, any
	// signature sent, the full id number or name.
	entry, ok, err := ticketcache.ReadEntry(context.Background(), st.db.Client, testApp)
	if err != nil || !ok {
		t.Fatalf("ticket entry: %v, %v", ok, err)
	}
	forbidden := []string{testSecret, entry.AccessToken, entry.Ticket, "110101199003071234", "张三"}
	for i, w := range workers {
		w.shutdown(t)
		logs := w.logs.String()
		if !strings.Contains(logs, `"outcome"`) {
			t.Errorf("worker %d logged no task outcome", i)
		}
		for _, bad := range forbidden {
			if bad != "" && strings.Contains(logs, bad) {
				t.Errorf("worker %d logs contain a secret value (%d chars)", i, len(bad))
			}
		}
		if strings.Contains(logs, "sign=") && !strings.Contains(logs, "sign=REDACTED") {
			t.Errorf("worker %d logs contain a signature", i)
		}
	}
}

func TestEnqueueThenStatus(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	w := st.startWorker(t)

	code, out, errOut := st.run(t, "enqueue", "--app-id", testApp, "--order-no", "ord0001", "--get-file", "1")
	if code != 0 || !strings.Contains(out, "enqueued TIDA0001:ord0001") {
		t.Fatalf("enqueue: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ = st.run(t, "enqueue", "--app-id", testApp, "--order-no", "ord0001"); code != 0 || !strings.Contains(out, "already queued") {
		t.Fatalf("enqueue again: exit %d, stdout %q, want already queued and exit 0", code, out)
	}
	var rec orderstore.Record
	deadline := time.Now().Add(time.Minute)
	for {
		code, out, _ = st.run(t, "status", "--app-id", testApp, "--order-no", "ord0001")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("status printed %q: %v", out, err)
			}
			if rec.Evidence.Status == "stored" {
				break
			}
		} else if code != 1 {
			t.Fatalf("status: exit %d", code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stored evidence by the deadline: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rec.Status != "passed" || rec.IDNo != "110***********1234" {
		t.Errorf("status record = %+v", rec)
	}

	code, out, errOut = st.run(t, "verify", "--app-id", testApp, "--order-no", "ord0001")
	if code != 0 || !strings.Contains(out, "ok: 2 files match") {
		t.Fatalf("verify: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	resp, err := http.Get("http://" + w.m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{"facesync_tasks_total", "facesync_evidence_bytes_total", "facesync_ticket_", `facesync_queue_tasks{queue="facesync_webhook",state="pending"} 0`} {
		if !strings.Contains(string(body), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + w.m.HTTPAddr() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s = %v, %v, want 200", path, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func TestEnqueueFileReportsBadLines(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	path := filepath.Join(t.TempDir(), "orders.csv")
	data := "# orders of the day\n\nTIDA0001,o1\nTIDA0001,o2,0\nTIDA0001,bad order\nTIDA0001\nTIDA0001,o3,7\nTIDA0001, o4 ,2\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := st.run(t, "enqueue", "--file", path)
	if code != 2 {
		t.Errorf("enqueue --file with bad lines: exit %d, want 2", code)
	}
	if !strings.Contains(out, "3 enqueued, 0 already queued, 3 bad lines") {
		t.Errorf("stdout %q", out)
	}
	for _, line := range []string{":5:", ":6:", ":7:"} {
		if !strings.Contains(errOut, path+line) {
			t.Errorf("stderr %q does not report line %s", errOut, line)
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, nil, 2, "usage"},
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"status without ids", nil, []string{"status"}, 2, "--app-id and --order-no are required"},
		{"status of nothing", nil, []string{"status", "--app-id", testApp, "--order-no", "none"}, 1, "no decision record"},
		{"verify of nothing", nil, []string{"verify", "--app-id", testApp, "--order-no", "none"}, 1, "no manifest"},
		{"enqueue bad get_file", nil, []string{"enqueue", "--app-id", testApp, "--order-no", "o", "--get-file", "5"}, 2, "get_file"},
		{"redis unreachable", map[string]string{"FACESYNC_REDIS_URL": "redis://127.0.0.1:1/0"}, []string{"status", "--app-id", testApp, "--order-no", "o"}, 2, "unreachable (FACESYNC_REDIS_URL)"},
		{"redis cluster", map[string]string{"FACESYNC_REDIS_URL": "redis-cluster://127.0.0.1:7000/0"}, []string{"status", "--app-id", testApp, "--order-no", "o"}, 2, "FACESYNC_REDIS_URL: Redis Cluster is not supported"},
		{"sentinel without master", map[string]string{"FACESYNC_REDIS_URL": "redis-sentinel://127.0.0.1:26379/0"}, []string{"worker"}, 2, "FACESYNC_REDIS_URL: redis-sentinel:// needs ?master=NAME"},
		{"missing CA file", map[string]string{"FACESYNC_REDIS_URL": "rediss://127.0.0.1:1/0", "FACESYNC_REDIS_CA_FILE": "/nonexistent/ca.pem"}, []string{"status", "--app-id", testApp, "--order-no", "o"}, 2, "FACESYNC_REDIS_CA_FILE: cannot read /nonexistent/ca.pem"},
		{"worker without apps", map[string]string{"FACESYNC_APPS": ""}, []string{"worker"}, 2, "FACESYNC_APPS"},
		{"worker without bucket", map[string]string{"FACESYNC_S3_BUCKET": ""}, []string{"worker"}, 2, "FACESYNC_S3_BUCKET"},
		{"short evidence delay", map[string]string{"FACESYNC_EVIDENCE_DELAY": "500ms"}, []string{"worker"}, 2, "FACESYNC_EVIDENCE_DELAY"},
		{"bad duration", map[string]string{"FACESYNC_RESULT_WAIT": "soon"}, []string{"worker"}, 2, "FACESYNC_RESULT_WAIT"},
		{"bad apps", map[string]string{"FACESYNC_APPS": "TIDA0001"}, []string{"worker"}, 2, "FACESYNC_APPS: entry 1: want APPID=SECRET"},
		{"bad prefix", map[string]string{"FACESYNC_S3_PREFIX": "evidence"}, []string{"worker"}, 2, "FACESYNC_S3_PREFIX"},
		{"zero wait", map[string]string{"FACESYNC_EVIDENCE_WAIT": "0s"}, []string{"worker"}, 2, "FACESYNC_EVIDENCE_WAIT"},
		{"bad log level", map[string]string{"FACESYNC_LOG_LEVEL": "loud"}, []string{"worker"}, 2, "FACESYNC_LOG_LEVEL"},
		{"rate not a whole number", map[string]string{"FACESYNC_PROVIDER_RATE": "20/s"}, []string{"worker"}, 2, "FACESYNC_PROVIDER_RATE: \"20/s\" is not a whole number"},
		{"negative rate", map[string]string{"FACESYNC_PROVIDER_RATE": "-1"}, []string{"worker"}, 2, "FACESYNC_PROVIDER_RATE"},
		{"rate too high", map[string]string{"FACESYNC_PROVIDER_RATE": "2000000"}, []string{"worker"}, 2, "FACESYNC_PROVIDER_RATE: pacing: rate 2000000"},
		{"worker with redis down", map[string]string{"FACESYNC_REDIS_URL": "redis://127.0.0.1:1/0"}, []string{"worker"}, 2, "unreachable (FACESYNC_REDIS_URL)"},
		{"worker with bucket missing", map[string]string{"FACESYNC_S3_BUCKET": "no-such-bucket"}, []string{"worker"}, 2, "evidence bucket unreachable"},
	}
	for _, tt := range tests {
		code, _, errb := st.runWith(t, tt.env, tt.args...)
		if code != tt.code || !strings.Contains(errb, tt.stderr) {
			t.Errorf("%s: exit %d, stderr %q, want %d and %q", tt.name, code, errb, tt.code, tt.stderr)
		}
		if tt.code == 2 && tt.args != nil && strings.Count(strings.TrimSpace(errb), "\n") > 0 && !strings.HasPrefix(tt.name, "no command") {
			t.Errorf("%s: stderr has more than one line: %q", tt.name, errb)
		}
		if strings.Contains(errb, testSecret) {
			t.Errorf("%s: stderr contains the app secret", tt.name)
		}
	}
}

// TestExternalTicketSource: the partner's backend owns the token and
// ticket and writes them to the shared entry; facesync, given bare app ids,
// only reads them and never fetches its own.
func TestExternalTicketSource(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.env["FACESYNC_TICKET_SOURCE"] = "external"
	st.env["FACESYNC_APPS"] = testApp // no secret: facesync never fetches

	// The partner's refresher.
	ctx := context.Background()
	client := idasc.New(st.fake.URL)
	token, err := client.AccessToken(ctx, testApp, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := client.SignTicket(ctx, testApp, token.Value)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ticketcache.Publish(ctx, st.db.Client, testApp,
		ticketcache.Credential{Value: token.Value, ExpiresIn: token.ExpiresIn},
		ticketcache.Credential{Value: ticket.Value, ExpiresIn: ticket.ExpiresIn}, time.Now()); err != nil {
		t.Fatal(err)
	}

	st.startWorker(t)
	if code, _, stderr := st.run(t, "enqueue", "--app-id", testApp, "--order-no", "ext1"); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, stderr)
	}
	deadline := time.Now().Add(time.Minute)
	var r *orderstore.Record
	for r == nil || r.Evidence.Status == orderstore.EvidencePending {
		if time.Now().After(deadline) {
			t.Fatalf("order not final by the deadline: %+v", r)
		}
		time.Sleep(100 * time.Millisecond)
		r = st.record(t, "ext1")
	}
	if r.Status != orderstore.StatusPassed || r.Evidence.Status != orderstore.EvidenceStored {
		t.Errorf("record = %+v, want passed with evidence stored", r)
	}
	if tm, tk := st.fake.TokenMints(testApp), st.fake.TicketMints(testApp); tm != 1 || tk != 1 {
		t.Errorf("token mints %d, ticket mints %d, want only the partner's 1 and 1", tm, tk)
	}
}
