package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker"
	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/workertest"
)

// EnvKeepLogs names a folder into which every worker's log is copied when
// its test ends, for reading what happened after a run.
const EnvKeepLogs = "FACESYNC_TEST_KEEP_LOGS"

// binary is the facesync binary under test, set by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// ticketcachetest's readiness probes would log every refused dial.
	redis.SetLogger(quietRedis{})
	var err error
	if binary, err = workertest.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 2
	}
	defer workertest.Cleanup()
	return m.Run()
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// Personal data the fake provider sends for every order; it must never
// reach a log.
const (
	fakeIDNo = "110101199003071234"
	fakeName = "张三"
)

// stack is one test's world: its own Redis, S3 server and bucket, fake
// provider and worker processes.
type stack struct {
	t      *testing.T
	app    string
	secret string
	redis  *ticketcachetest.Server
	s3     *storagetest.Server
	prov   *provider
	rdb    *redis.Client
	store  *orderstore.Store
	client *asynq.Client
	insp   *asynq.Inspector
	s3c    *s3.Client

	mu       sync.Mutex
	nworkers int // workers started, for their names

	// redisEnv, when set, replaces FACESYNC_REDIS_URL of redis in the
	// workers' environment (a Sentinel or TLS deployment instead).
	redisEnv []string
}

// newStack starts Redis (with redisArgs), the S3 server and the fake
// provider for app, and clients for the test's own checks.
func newStack(t *testing.T, app string, redisArgs ...string) *stack {
	t.Helper()
	s := &stack{t: t, app: app, secret: "sec-" + randomHex(12)}
	s.redis = ticketcachetest.StartServer(t, redisArgs...)
	s.s3 = storagetest.StartServer(t)
	s.s3c = s.s3.Client()
	s.prov = newProvider(idasctest.New(idasctest.Options{Apps: map[string]string{app: s.secret}}))
	srv := httptest.NewServer(s.prov)
	// Close runs after the workers are gone (cleanups run last first), so
	// no request holds it open.
	t.Cleanup(srv.Close)
	s.prov.URL = srv.URL
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr})
	t.Cleanup(func() { _ = s.rdb.Close() })
	var err error
	if s.store, err = orderstore.New(s.rdb, orderstore.Config{}); err != nil {
		t.Fatal(err)
	}
	opt := asynq.RedisClientOpt{Addr: s.redis.Addr}
	s.client = asynq.NewClient(opt)
	t.Cleanup(func() { _ = s.client.Close() })
	s.insp = asynq.NewInspector(opt)
	t.Cleanup(func() { _ = s.insp.Close() })
	return s
}

// env is a worker's environment: nothing of the test process's own, so
// that no FACESYNC_ or AWS_ variable of the machine leaks in.
func (s *stack) env(extra ...string) []string {
	cmd := workertest.Command{AppID: s.app, Secret: s.secret, IdascURL: s.prov.URL, S3: s.s3}
	if s.redis != nil {
		cmd.RedisURL = "redis://" + s.redis.Addr + "/0"
	}
	// redisEnv (Sentinel, TLS) comes after the defaults and wins.
	return cmd.Env(s.t.TempDir(), append(append([]string{"FACESYNC_LOG_LEVEL=debug"}, s.redisEnv...), extra...)...)
}

// startWorker starts a worker process with the stack's environment
// changed by extra (later entries win) and waits until it serves.
func (s *stack) startWorker(extra ...string) *workertest.Proc {
	t := s.t
	t.Helper()
	s.mu.Lock()
	s.nworkers++
	name := fmt.Sprintf("worker%d", s.nworkers)
	s.mu.Unlock()
	w := workertest.Start(t, name, s.env(extra...), binary, "worker")
	t.Cleanup(func() {
		w.Kill()
		s.checkLog(w)
		if d := os.Getenv(EnvKeepLogs); d != "" {
			_ = os.WriteFile(filepath.Join(d, t.Name()+"-"+w.Name+".log"), []byte(w.Output()), 0o644)
		}
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", w.Name, w.Tail(40))
		}
	})
	w.WaitLog(t, `"msg":"worker started"`, 30*time.Second)
	return w
}

// checkLog fails the test when a worker's log holds the app secret,
// personal data or a panic.
func (s *stack) checkLog(w *workertest.Proc) {
	log := w.Output()
	for what, needle := range map[string]string{
		"the app secret": s.secret, "the full id number": fakeIDNo, "the name": fakeName, "a panic": "panic:",
	} {
		if strings.Contains(log, needle) {
			s.t.Errorf("%s log contains %s", w.Name, what)
		}
	}
}

// order is one order a test enqueued and what it must end as.
type order struct {
	orderNo  string
	getFile  string // as enqueued; "" means "1"
	status   string // worker.Status*
	code     string // the record's code; "" means "0" for passed
	evidence string // worker.Evidence*
}

// enqueue enqueues o with the partner's helper (task ID, retention).
func (s *stack) enqueue(o order) {
	s.t.Helper()
	if err := s.tryEnqueue(o); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) tryEnqueue(o order) error {
	p := tasks.FetchResult{AppID: s.app, OrderNo: o.orderNo, GetFile: tasks.GetFile(o.getFile)}
	if _, err := tasks.Enqueue(context.Background(), s.client, p); err != nil {
		return fmt.Errorf("enqueue %s: %w", o.orderNo, err)
	}
	return nil
}

// enqueueRaw enqueues a fetch_result task with any payload, as a partner
// with a plain asynq client does: no task ID, no retention.
func (s *stack) enqueueRaw(payload string) {
	s.t.Helper()
	if err := s.tryEnqueueRaw(payload); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) tryEnqueueRaw(payload string) error {
	_, err := s.client.Enqueue(asynq.NewTask(tasks.TypeFetchResult, []byte(payload)), asynq.Queue(tasks.QueueResult))
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", payload, err)
	}
	return nil
}

// record reads an order's decision record; nil when there is none.
func (s *stack) record(ctx context.Context, orderNo string) (*orderstore.Record, error) {
	return workertest.ReadRecord(ctx, s.store, s.app, orderNo)
}

// terminal reports whether a record is final: a decision and evidence no
// longer pending.
func terminal(r *orderstore.Record) bool {
	return r != nil && r.Status != "" && r.Evidence.Status != orderstore.EvidencePending
}

// waitTerminal polls until every order's record is terminal, failing the
// test with the laggards when d passes.
func (s *stack) waitTerminal(orders []order, d time.Duration) map[string]*orderstore.Record {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(d)
	recs := make(map[string]*orderstore.Record, len(orders))
	for {
		var waiting []string
		for _, o := range orders {
			if terminal(recs[o.orderNo]) {
				continue
			}
			r, err := s.record(ctx, o.orderNo)
			if err == nil && terminal(r) {
				recs[o.orderNo] = r
				continue
			}
			state := "no record"
			switch {
			case err != nil:
				state = err.Error()
			case r != nil:
				state = r.Status + "/" + r.Evidence.Status
			}
			waiting = append(waiting, o.orderNo+" ("+state+")")
		}
		if len(waiting) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d of %d orders not terminal after %v: %s", len(waiting), len(orders), d, strings.Join(first(waiting, 20), ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitIdle polls until the queue has no pending, active, scheduled or
// retrying task.
func (s *stack) waitIdle(queue string, d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		q, err := s.insp.GetQueueInfo(queue)
		if err == nil && q.Pending+q.Active+q.Scheduled+q.Retry+q.Aggregating == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("queue %s not idle after %v: %+v (%v)", queue, d, q, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check waits for every order to be terminal and checks each record
// against what the order must end as, and each stored file byte for byte
// against what the provider sent.
func (s *stack) check(orders []order, d time.Duration) map[string]*orderstore.Record {
	s.t.Helper()
	recs := s.waitTerminal(orders, d)
	for _, o := range orders {
		s.checkOrder(o, recs[o.orderNo])
	}
	return recs
}

func (s *stack) checkOrder(o order, r *orderstore.Record) {
	t := s.t
	t.Helper()
	code := o.code
	if code == "" && o.status == orderstore.StatusPassed {
		code = idasc.CodeOK
	}
	if r.AppID != s.app || r.OrderNo != o.orderNo || r.Status != o.status || r.Code != code || r.Evidence.Status != o.evidence {
		t.Errorf("record of %s = %s:%s %s code %q evidence %s (%s), want %s:%s %s code %q evidence %s",
			o.orderNo, r.AppID, r.OrderNo, r.Status, r.Code, r.Evidence.Status, r.Evidence.Msg,
			s.app, o.orderNo, o.status, code, o.evidence)
		return
	}
	if r.Status != orderstore.StatusError && (r.IDNo != worker.MaskIDNo(fakeIDNo) || r.Name != worker.MaskName(fakeName)) {
		t.Errorf("record of %s has id_no %q name %q, want them masked", o.orderNo, r.IDNo, r.Name)
	}
	if r.Evidence.Status != orderstore.EvidenceStored {
		if len(r.Evidence.Files) != 0 && r.Evidence.Status != orderstore.EvidenceUnavailable {
			t.Errorf("record of %s lists %d files with evidence %s", o.orderNo, len(r.Evidence.Files), r.Evidence.Status)
		}
		return
	}
	var want []string
	switch o.getFile {
	case tasks.GetFilePhoto:
		want = []string{idasc.KindPhoto}
	case tasks.GetFileVideo:
		want = []string{idasc.KindVideo}
	default:
		want = []string{idasc.KindPhoto, idasc.KindVideo}
	}
	var got []string
	for _, f := range r.Evidence.Files {
		got = append(got, f.Kind)
		ct, size, sum := s.prov.Evidence(s.app, o.orderNo, f.Kind)
		if f.Size != size || f.SHA256 != sum || f.ContentType != ct {
			t.Errorf("record of %s lists %s %s size %d sha256 %s, want %s size %d sha256 %s",
				o.orderNo, f.Kind, f.ContentType, f.Size, f.SHA256, ct, size, sum)
			continue
		}
		s.checkObject(o.orderNo, f.Key, f.ContentType, size, sum)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("record of %s lists files %v, want %v", o.orderNo, got, want)
	}
	if r.Evidence.ManifestKey == "" {
		t.Errorf("record of %s has evidence stored and no manifest key", o.orderNo)
		return
	}
	s.checkManifest(o.orderNo, r)
}

// checkObject reads an object back and compares it with the provider's
// file.
func (s *stack) checkObject(orderNo, key, contentType string, size int64, sum string) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !strings.HasPrefix(key, "evidence/"+s.app+"/"+orderNo+"/") {
		t.Errorf("object of %s is at %s, outside its folder", orderNo, key)
	}
	out, err := s.s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.s3.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Errorf("get %s: %v", key, err)
		return
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		t.Errorf("read %s: %v", key, err)
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != sum {
		t.Errorf("object %s has size %d sha256 %s, want size %d sha256 %s", key, n, got, size, sum)
	}
	if ct := aws.ToString(out.ContentType); ct != contentType {
		t.Errorf("object %s has Content-Type %q, want %q", key, ct, contentType)
	}
}

// checkManifest compares the stored manifest's files with the record's.
func (s *stack) checkManifest(orderNo string, r *orderstore.Record) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.s3.Bucket), Key: aws.String(r.Evidence.ManifestKey)})
	if err != nil {
		t.Errorf("get manifest of %s: %v", orderNo, err)
		return
	}
	defer out.Body.Close()
	var m struct {
		AppID   string `json:"app_id"`
		OrderNo string `json:"order_no"`
		Status  string `json:"status"`
		Files   []struct {
			Kind   string `json:"kind"`
			Key    string `json:"key"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		t.Errorf("manifest of %s: %v", orderNo, err)
		return
	}
	if m.AppID != s.app || m.OrderNo != orderNo || m.Status != r.Status || len(m.Files) != len(r.Evidence.Files) {
		t.Errorf("manifest of %s = %s:%s %s with %d files, want %s:%s %s with %d files",
			orderNo, m.AppID, m.OrderNo, m.Status, len(m.Files), s.app, orderNo, r.Status, len(r.Evidence.Files))
		return
	}
	for i, f := range m.Files {
		rf := r.Evidence.Files[i]
		if f.Kind != rf.Kind || f.Key != rf.Key || f.Size != rf.Size || f.SHA256 != rf.SHA256 {
			t.Errorf("manifest of %s lists %+v, record lists %+v", orderNo, f, rf)
		}
	}
}

// verify runs `facesync verify` on an order, which must find its evidence
// intact.
func (s *stack) verify(orderNo string) {
	s.t.Helper()
	cmd := exec.Command(binary, "verify", "--app-id", s.app, "--order-no", orderNo)
	cmd.Env = s.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		s.t.Errorf("facesync verify --order-no %s: %v\n%s", orderNo, err, out.String())
	}
}

// getFileRequests counts the sync requests with get_file the provider saw
// for each order.
func (s *stack) getFileRequests() map[string]int {
	n := map[string]int{}
	for _, r := range s.prov.Requests() {
		if r.Path == "/api/server/sync" && r.GetFile != "" && r.AppID == s.app {
			n[r.OrderNo]++
		}
	}
	return n
}

// multipartUploads lists the keys of unfinished multipart uploads in the
// bucket.
func (s *stack) multipartUploads() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.s3.Bucket)})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys, nil
}

// eventually polls cond every 50 ms until it holds, failing the test with
// what when d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// passing returns n orders named prefix-000.. that pass with both files
// stored.
func passing(prefix string, n int) []order {
	out := make([]order, n)
	for i := range out {
		out[i] = order{orderNo: fmt.Sprintf("%s-%03d", prefix, i), status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	}
	return out
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
