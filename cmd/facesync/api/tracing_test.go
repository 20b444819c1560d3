package api_test

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/facesync/facesync/tasks"
)

// TestPostContinuesTraceparent: a partner's traceparent on POST /v1/orders
// is continued by the API's span and carried on in the task's headers, for
// the worker to continue.
func TestPostContinuesTraceparent(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	b := setup(t, options{tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := b.do(t, "POST", "/v1/orders", strings.NewReader(`{"app_id":"`+appA+`","order_no":"ord-trace"}`),
		"Authorization", "Bearer "+b.keyAll, "Content-Type", "application/json",
		"Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.status != 202 {
		t.Fatalf("POST = %v, want 202", r)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "POST /v1/orders" || spans[0].SpanContext().TraceID().String() != traceID {
		t.Fatalf("spans = %v, want one POST /v1/orders span in trace %s", spans, traceID)
	}
	info, err := b.insp.GetTaskInfo(tasks.QueueResult, tasks.TaskID(appA, "ord-trace"))
	if err != nil {
		t.Fatal(err)
	}
	want := "00-" + traceID + "-" + spans[0].SpanContext().SpanID().String() + "-01"
	if got := info.Headers["traceparent"]; got != want {
		t.Errorf("task traceparent = %q, want %q (the API's span)", got, want)
	}
}
