package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/facesync/facesync/cmd/facesync/api"
	"github.com/facesync/facesync/storage"
	"github.com/facesync/facesync/storage/storagetest"
	"github.com/facesync/facesync/ticketcache/ticketcachetest"
	"github.com/facesync/facesync/worker/orderstore"
)

// Apps of the test keys: keyAll may act for every app, keyOne for appA
// only.
const (
	appA = "TIDA0001"
	appB = "TIDB0002"
)

// bundle is one API over real HTTP on a real Redis database (and, with
// S3, a real versitygw), with the keys and logs a test inspects.
type bundle struct {
	url     string
	client  *http.Client // validates every response against the OpenAPI document
	val     *validating
	rdb     *redis.Client
	store   *orderstore.Store
	insp    *asynq.Inspector
	enq     *asynq.Client
	keyAll  string
	keyOne  string
	reg     *prometheus.Registry
	access  *observer.ObservedLogs
	audit   *observer.ObservedLogs
	s3      *storagetest.Server
	sink    *storage.S3
	bucket  string
	purgeMu sync.Mutex
	purged  map[string]bool
}

type options struct {
	s3 bool
	// publicEndpoint overrides the endpoint links are signed for.
	publicEndpoint func(s *storagetest.Server) string
	rdb            *redis.Client // else a clean database of the shared server
	aopt           asynq.RedisConnOpt
	// discardLogs encodes the access log as JSON to io.Discard, as in
	// production but unobserved (benchmarks).
	discardLogs bool
	replicated  func(ctx context.Context, keys ...string) error
	tracer      trace.TracerProvider
}

func setup(t testing.TB, o options) *bundle {
	t.Helper()
	b := &bundle{purged: map[string]bool{}, reg: prometheus.NewRegistry()}
	if o.rdb == nil {
		db := ticketcachetest.NewDB(t)
		b.rdb = db.Client
		o.aopt = asynq.RedisClientOpt{Addr: db.Addr, DB: db.DB}
	} else {
		b.rdb = o.rdb
	}
	var err error
	if b.store, err = orderstore.New(b.rdb, orderstore.Config{}); err != nil {
		t.Fatal(err)
	}
	b.enq = asynq.NewClient(o.aopt)
	b.insp = asynq.NewInspector(o.aopt)
	t.Cleanup(func() { _ = b.enq.Close(); _ = b.insp.Close() })

	var links api.Linker = noLinks{}
	if o.s3 {
		b.s3 = storagetest.StartServer(t)
		b.bucket = b.s3.Bucket
		internal := b.s3.Client()
		public := internal
		if o.publicEndpoint != nil {
			public = storagetest.NewS3Client(o.publicEndpoint(b.s3), b.s3.AccessKey, b.s3.SecretKey)
		}
		if b.sink, err = storage.NewS3(internal, storage.Config{Bucket: b.bucket}); err != nil {
			t.Fatal(err)
		}
		if links, err = api.NewS3Links(internal, public, b.bucket); err != nil {
			t.Fatal(err)
		}
	}

	var keyLines []string
	for _, k := range []struct {
		id   string
		apps []string
		dst  *string
	}{{"partner-all", []string{"*"}, &b.keyAll}, {"partner-a", []string{appA}, &b.keyOne}} {
		token, line, err := api.NewKey(k.id, k.apps)
		if err != nil {
			t.Fatal(err)
		}
		*k.dst = token
		keyLines = append(keyLines, line)
	}
	keys, err := api.ParseKeys(strings.NewReader("# test keys\n" + strings.Join(keyLines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}

	accessCore, access := observer.New(zapcore.DebugLevel)
	auditCore, audit := observer.New(zapcore.InfoLevel)
	b.access, b.audit = access, audit
	accessLog := zap.New(accessCore)
	if o.discardLogs {
		accessLog = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	}
	srv, err := api.New(api.Deps{
		Keys: keys, Enqueuer: b.enq, Tasks: b.insp, Records: b.store, Links: links,
		Purged: func(_ context.Context, appID, orderNo string) (bool, error) {
			b.purgeMu.Lock()
			defer b.purgeMu.Unlock()
			return b.purged[appID+":"+orderNo], nil
		},
		Replicated: o.replicated,
		Logger:     accessLog, Audit: zap.New(auditCore), Registerer: b.reg, Tracer: o.tracer,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config = api.NewHTTPServer(srv)
	hs.Start()
	t.Cleanup(hs.Close)
	b.url = hs.URL
	b.val = newValidating(t, hs.Client().Transport)
	b.client = &http.Client{
		Transport: b.val,
		// Evidence links are checked as the 302 the API gives.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// noLinks is the Linker of tests without S3: every object is missing.
type noLinks struct{}

func (noLinks) Link(context.Context, string, time.Duration) (string, error) {
	return "", api.ErrNotStored
}

func (b *bundle) purge(appID, orderNo string) {
	b.purgeMu.Lock()
	defer b.purgeMu.Unlock()
	b.purged[appID+":"+orderNo] = true
}

// response is a finished response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// errorCode returns the code of an error body, or "".
func (r response) errorCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends one request; hdr holds header pairs ("Authorization", "Bearer x").
func (b *bundle) do(t testing.TB, method, path string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, rb}
}

// post submits a JSON body with key.
func (b *bundle) post(t testing.TB, key, body string) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/v1/orders", strings.NewReader(body),
		"Authorization", "Bearer "+key, "Content-Type", "application/json")
}

func (b *bundle) get(t testing.TB, key, path string) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, nil, "Authorization", "Bearer "+key)
}

// newValidating loads the served document as OpenAPI 3.1 and checks the
// responses base carries against it.
func newValidating(t testing.TB, base http.RoundTripper) *validating {
	t.Helper()
	doc := loadDoc(t)
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("legacy.NewRouter: %v", err)
	}
	return &validating{t: t, base: base, doc: doc, router: r}
}

func loadDoc(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json does not validate: %v", err)
	}
	return doc
}

// validating is a RoundTripper that checks every response against the
// OpenAPI document: a response the document does not describe fails the
// test.
type validating struct {
	t      testing.TB
	base   http.RoundTripper
	doc    *openapi3.T
	router routers.Router
}

func (v *validating) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := validateResponse(v.doc, v.router, req, resp, body); err != nil {
		v.t.Errorf("%s %s -> %d %s: not as the OpenAPI document says: %v", req.Method, req.URL.Path, resp.StatusCode, body, err)
	}
	return resp, nil
}

func validateResponse(doc *openapi3.T, router routers.Router, req *http.Request, resp *http.Response, body []byte) error {
	route, params, err := router.FindRoute(req)
	if err == nil && resp.StatusCode == http.StatusMethodNotAllowed {
		err = fmt.Errorf("route %s %s answered 405", route.Method, route.Path)
	}
	if err != nil {
		// Unknown routes and methods are outside the document's paths: their
		// bodies are its Error schema, 405 with Allow.
		switch {
		case resp.StatusCode == http.StatusNotFound:
		case resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "":
		default:
			return fmt.Errorf("no route in the document (%v), yet answered %d", err, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			return fmt.Errorf("Content-Type %q, want application/json", ct)
		}
		var val any
		if err := json.Unmarshal(body, &val); err != nil {
			return err
		}
		return doc.Components.Schemas["Error"].Value.VisitJSON(val, openapi3.EnableJSONSchema2020())
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	return openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
}
