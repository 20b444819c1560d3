package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/facesync/facesync/worker/tracing"
)

func recorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

func TestEnabled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, false},
	}
	for _, tt := range tests {
		if got := tracing.Enabled(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("Enabled(%v) = %v, want %v", tt.env, got, tt.want)
		}
	}
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
	if _, _, err := tracing.Setup(context.Background(), func(k string) string { return env[k] }, "facesync"); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Errorf("Setup(grpc) error = %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}
}

func TestInjectExtract(t *testing.T) {
	t.Parallel()
	if h := tracing.Inject(context.Background()); h != nil {
		t.Errorf("Inject(no span) = %v, want nil", h)
	}
	_, tp := recorder()
	ctx, span := tp.Tracer("t").Start(context.Background(), "root")
	defer span.End()
	h := tracing.Inject(ctx)
	if !strings.HasPrefix(h["traceparent"], "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("Inject = %v, want a traceparent of trace %s", h, span.SpanContext().TraceID())
	}
	got := tracing.Extract(context.Background(), h)
	_, child := tp.Tracer("t").Start(got, "child")
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Errorf("a span under Extract(Inject(ctx)) is in trace %s, want %s", child.SpanContext().TraceID(), span.SpanContext().TraceID())
	}
}

// TestTransportRecordsNoQuery: the provider's query string carries the
// secret, token, ticket and sign; a span holds the path only.
func TestTransportRecordsNoQuery(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	defer srv.Close()
	rec, tp := recorder()
	hc := &http.Client{Transport: tracing.Transport(http.DefaultTransport, tp)}
	get := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/server/sync?app_id=A&sign=SECRETSIGN&secret=S3CR3T", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(context.Background()) // outside a trace: no span
	ctx, root := tp.Tracer("t").Start(context.Background(), "root")
	get(ctx)
	root.End()
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "GET /api/server/sync" {
		t.Fatalf("spans = %d (%v), want the request's and the root", len(spans), spans)
	}
	for _, kv := range spans[0].Attributes() {
		if v := kv.Value.String(); strings.Contains(v, "SECRETSIGN") || strings.Contains(v, "S3CR3T") || strings.Contains(v, "?") {
			t.Errorf("attribute %s = %q holds the query", kv.Key, v)
		}
	}
	if spans[0].Status().Code.String() != "Error" {
		t.Errorf("a 418 answer's span status = %v, want Error", spans[0].Status())
	}
}

func TestRedisHookScriptsInsideATraceOnly(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	rec, tp := recorder()
	rdb.AddHook(tracing.RedisHook(tp))
	script := redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1])`)
	if err := script.Run(context.Background(), rdb, []string{"k"}, "private-value").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("t").Start(context.Background(), "root")
	if err := script.Run(ctx, rdb, []string{"k"}, "private-value").Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Get(ctx, "k") // not a script: no span
	root.End()
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "private-value") {
				t.Errorf("span %s holds a script argument", s.Name())
			}
		}
	}
	if strings.Join(names, ",") != "redis EVALSHA,root" {
		t.Errorf("spans = %v, want one EVALSHA inside the trace and the root", names)
	}
}

func TestMiddlewareContinuesHeaders(t *testing.T) {
	t.Parallel()
	rec, tp := recorder()
	ctx, root := tp.Tracer("t").Start(context.Background(), "root")
	h := tracing.Inject(ctx)
	root.End()
	handler := tracing.Middleware(tp)(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		tracing.Order(ctx, "A", "O")
		return nil
	}))
	for _, headers := range []map[string]string{h, nil} {
		if err := handler.ProcessTask(context.Background(), asynq.NewTaskWithHeaders("faceid:fetch_result", nil, headers)); err != nil {
			t.Fatal(err)
		}
	}
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	if spans[1].SpanContext().TraceID() != root.SpanContext().TraceID() || spans[1].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("the task with headers is not a child of the root")
	}
	if spans[2].SpanContext().TraceID() == root.SpanContext().TraceID() || spans[2].Parent().IsValid() {
		t.Errorf("the task without headers did not start a trace of its own")
	}
}

// BenchmarkTracingOff is what the decision path pays per task with no
// OTEL_* set: the worker wraps nothing then, and calls only Order (on the
// attempt's context, which has no span) and Inject (for the evidence
// task's headers).
func BenchmarkTracingOff(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tracing.Order(ctx, "TIDA0001", "ord0001")
		if h := tracing.Inject(ctx); h != nil {
			b.Fatal("headers without a span")
		}
	}
}
