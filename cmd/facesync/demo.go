package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"

	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/idasc/idasctest"
	"github.com/facesync/facesync/worker/orderstore"
)

// The demo's app: the fake provider knows it, nobody else does.
const (
	demoAppID  = "TIDADEMO"
	demoSecret = "demo-secret-not-a-real-one"
	demoBucket = "facesync-demo"
)

// demoOrder is one order the demo runs, with what the fake provider does.
type demoOrder struct {
	orderNo  string
	story    string
	scenario idasctest.Scenario
}

var demoOrders = []demoOrder{
	{"demo-passed", "passed at once, JPEG photo and MP4 video", idasctest.Scenario{}},
	{"demo-failed", "face did not match (code 66660015)", idasctest.Scenario{Code: "66660015", Msg: "比对相似度未达到通过标准"}},
	{"demo-noresult-then-passed", "no result twice (66660011), then passed", idasctest.Scenario{NotReady: 2}},
	{"demo-late-evidence", "evidence ready only 4 s after the query, PNG photo", idasctest.Scenario{EvidenceDelay: 4 * time.Second, PhotoFormat: "png"}},
	{"demo-flaky-provider", "HTTP 500 then a truncated body, then passed", idasctest.Scenario{HTTP500: 1, Truncated: 1}},
	{"demo-decision-only", "get_file 0: decision only, no evidence", idasctest.Scenario{}},
}

// runDemo runs facesync end to end in one process: in-memory Redis, the
// fake provider and an S3-compatible server writing to a folder, with the
// real worker, asynq server and S3 client.
func (m *Main) runDemo(ctx context.Context, args []string) error {
	fs := m.flags("demo")
	dir := fs.String("dir", "facesync-demo", "folder the demo's evidence objects are written to")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	started := time.Now()

	abs, err := filepath.Abs(*dir)
	if err != nil {
		return infraErr(fmt.Errorf("demo folder %s: %v", *dir, err))
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return infraErr(fmt.Errorf("demo folder %s: %v", abs, err))
	}

	mr, err := miniredis.Run()
	if err != nil {
		return infraErr(fmt.Errorf("in-memory redis: %v", err))
	}
	defer mr.Close()

	fake := idasctest.New(idasctest.Options{Apps: map[string]string{demoAppID: demoSecret}})
	for _, o := range demoOrders {
		fake.SetScenario(demoAppID, o.orderNo, o.scenario)
	}
	idascURL, stopIdasc, err := serveLoopback(fake)
	if err != nil {
		return infraErr(fmt.Errorf("fake provider: %v", err))
	}
	defer stopIdasc()

	s3URL, stopS3, err := serveDemoS3(abs)
	if err != nil {
		return infraErr(err)
	}
	defer stopS3()

	c, err := LoadConfig(func(name string) string {
		return map[string]string{
			"FACESYNC_REDIS_URL":   "redis://" + mr.Addr() + "/0",
			"FACESYNC_IDASC_URL":   idascURL,
			"FACESYNC_APPS":        demoAppID + "=" + demoSecret,
			"FACESYNC_S3_BUCKET":   demoBucket,
			"FACESYNC_S3_ENDPOINT": s3URL,
			"FACESYNC_HTTP_ADDR":   "127.0.0.1:0",
			"FACESYNC_LOG_FORMAT":  "console",
			"FACESYNC_LOG_LEVEL":   "error",
		}[name]
	})
	if err != nil {
		return infraErr(err)
	}
	sink, err := demoSink(ctx, c)
	if err != nil {
		return infraErr(err)
	}
	log, err := newLogger(c, m)
	if err != nil {
		return infraErr(err)
	}

	fmt.Fprintf(m.Stdout, "facesync demo: in-memory Redis, fake provider at %s, S3-compatible server at %s\n", idascURL, s3URL)
	fmt.Fprintf(m.Stdout, "evidence objects are written under %s\n\n", abs)

	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	werr := make(chan error, 1)
	go func() { werr <- m.serveWorker(wctx, c, log, sink) }()
	select {
	case <-m.Ready():
	case err := <-werr:
		return err
	}

	// Built like every other Redis connection, from the parsed URL.
	rdb := c.redis.NewClient()
	defer rdb.Close()
	client := asynq.NewClientFromRedisClient(rdb)
	for _, o := range demoOrders {
		p := tasks.FetchResult{AppID: demoAppID, OrderNo: o.orderNo}
		if o.orderNo == "demo-decision-only" {
			p.GetFile = tasks.GetFileNone
		}
		if _, err := tasks.Enqueue(ctx, client, p); err != nil {
			stopWorker()
			return infraErr(err)
		}
		fmt.Fprintf(m.Stdout, "enqueued %-27s %s\n", o.orderNo, o.story)
	}
	fmt.Fprintln(m.Stdout)

	store, err := orderstore.New(rdb, orderstore.Config{TTL: c.DecisionTTL})
	if err != nil {
		stopWorker()
		return infraErr(err)
	}
	records, err := m.demoWait(ctx, store, started)
	stopWorker()
	if wErr := <-werr; wErr != nil && err == nil {
		err = wErr
	}
	if err != nil {
		return err
	}

	m.demoTable(records)
	fmt.Fprintf(m.Stdout, "\nfacesync verify --app-id %s --order-no demo-passed:\n", demoAppID)
	if err := m.verify(ctx, sink, demoAppID, "demo-passed"); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "\nfiles: %s\n", filepath.Join(abs, "buckets", demoBucket, "evidence", demoAppID))
	fmt.Fprintf(m.Stdout, "done in %.1fs. To run the real thing: `make up` (Redis, MinIO, three workers), or set FACESYNC_* (see README) and run `facesync worker`.\n",
		time.Since(started).Seconds())
	return nil
}

// serveLoopback serves h on a free loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// serveDemoS3 runs gofakes3 on loopback with its objects in dir. It checks
// no checksums, which is why the tests use a real S3-compatible server.
func serveDemoS3(dir string) (string, func(), error) {
	base, err := s3afero.NewBasePathFs(afero.NewOsFs(), dir, s3afero.FsPathCreateAll)
	if err != nil {
		return "", nil, fmt.Errorf("demo folder %s: %v", dir, err)
	}
	backend, err := s3afero.MultiBucket(base)
	if err != nil {
		return "", nil, fmt.Errorf("demo S3 backend in %s: %v", dir, err)
	}
	if err := backend.CreateBucket(demoBucket); err != nil && !gofakes3.IsAlreadyExists(err) {
		return "", nil, fmt.Errorf("demo bucket: %v", err)
	}
	url, stop, err := serveLoopback(gofakes3.New(backend, gofakes3.WithAutoBucket(true)).Server())
	if err != nil {
		return "", nil, fmt.Errorf("demo S3 server: %v", err)
	}
	return url, stop, nil
}

// demoSink is the real S3 sink with the real client, over plain HTTP.
func demoSink(ctx context.Context, c *Config) (*storage.S3, error) {
	client, err := newS3Client(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	client = s3.New(client.Options(), func(o *s3.Options) {
		o.Credentials = aws.AnonymousCredentials{}
	})
	return storage.NewS3(client, storage.Config{Bucket: c.S3Bucket, Prefix: c.S3Prefix})
}

// demoWait shows progress until every order is final and its evidence is
// no longer pending.
func (m *Main) demoWait(ctx context.Context, store *orderstore.Store, started time.Time) (map[string]*orderstore.Record, error) {
	seen := map[string]string{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		records := map[string]*orderstore.Record{}
		for _, o := range demoOrders {
			r, _, err := store.Get(ctx, demoAppID, o.orderNo)
			if errors.Is(err, orderstore.ErrNoRecord) {
				continue
			}
			if err != nil {
				return nil, infraErr(err)
			}
			records[o.orderNo] = r
			state := r.Status + "/" + r.Evidence.Status
			if seen[o.orderNo] != state {
				seen[o.orderNo] = state
				fmt.Fprintf(m.Stdout, "%6.1fs  %-27s decision %-6s evidence %s\n",
					time.Since(started).Seconds(), o.orderNo, r.Status, r.Evidence.Status)
			}
		}
		done := len(records) == len(demoOrders)
		for _, r := range records {
			if !r.Final() {
				done = false
			}
		}
		if done {
			return records, nil
		}
		select {
		case <-ctx.Done():
			return nil, infraErr(fmt.Errorf("demo did not finish in time: %v", ctx.Err()))
		case <-tick.C:
		}
	}
}

func (m *Main) demoTable(records map[string]*orderstore.Record) {
	fmt.Fprintln(m.Stdout)
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tSTATUS\tCODE\tLIVE\tSIMILARITY\tID NO\tNAME\tEVIDENCE\tFILES")
	names := make([]string, 0, len(records))
	for n := range records {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := records[n]
		var files []string
		for _, f := range r.Evidence.Files {
			files = append(files, fmt.Sprintf("%s (%s)", filepath.Base(f.Key), humanBytes(f.Size)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, r.Status, r.Code, dash(r.LiveRate), dash(r.Similarity),
			dash(r.IDNo), dash(r.Name), r.Evidence.Status, dash(strings.Join(files, ", ")))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
