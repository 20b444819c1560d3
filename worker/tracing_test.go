package worker_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
	"github.com/facesync/facesync/worker/tracing"
	"github.com/facesync/facesync/worker/workertest"
)

// TestOneTraceFromEnqueueToEvidence: a partner's span, carried in the task
// headers, is continued by the decision attempt, its provider call, the
// evidence attempt a second later, its uploads and the order store's
// scripts: one trace, and no secret, ticket, sign or personal data in any
// attribute.
func TestOneTraceFromEnqueueToEvidence(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b := workertest.New(t, workertest.Options{Tracer: tp})

	ctx, root := tp.Tracer("partner").Start(context.Background(), "partner enqueue")
	if _, err := tasks.Enqueue(ctx, b.Client, tasks.FetchResult{AppID: appID, OrderNo: "ord-trace"}, tasks.Headers(tracing.Inject(ctx))); err != nil {
		t.Fatal(err)
	}
	root.End()
	r := b.WaitFinal(t, "ord-trace", wait)
	if r.Evidence.Status != orderstore.EvidenceStored {
		t.Fatalf("record = %+v, want evidence stored", r)
	}
	// The evidence attempt's span ends after the record is written.
	var spans []sdktrace.ReadOnlySpan
	workertest.WaitFor(t, 10*time.Second, "the evidence attempt's span", func() bool {
		spans = rec.Ended()
		for _, s := range spans {
			if s.Name() == tasks.TypeFetchEvidence {
				return true
			}
		}
		return false
	})

	traceID := root.SpanContext().TraceID()
	names := map[string]int{}
	var tree []string
	for _, s := range spans {
		if s.SpanContext().TraceID() != traceID {
			continue
		}
		names[s.Name()]++
		tree = append(tree, fmt.Sprintf("%s %s (parent %s)", s.StartTime().Format("15:04:05.000"), s.Name(), s.Parent().SpanID()))
		for _, kv := range s.Attributes() {
			v := kv.Value.String()
			for what, bad := range map[string]string{
				"the app secret": secret, "a query string": "?", "a signature": "sign=", "a nonce": "nonce=",
				"the full id number": "110101199003071234", "the name": "张三",
			} {
				if strings.Contains(v, bad) {
					t.Errorf("span %s attribute %s = %q holds %s", s.Name(), kv.Key, v, what)
				}
			}
		}
	}
	sort.Strings(tree)
	t.Logf("trace %s:\n  %s", traceID, strings.Join(tree, "\n  "))
	for _, want := range []string{"partner enqueue", tasks.TypeFetchResult, "GET /api/server/sync", tasks.TypeFetchEvidence,
		"storage.PutFile photo", "storage.PutFile video", "storage.PutManifest", "redis EVALSHA"} {
		if names[want] == 0 {
			t.Errorf("trace lacks a %q span; has %v", want, names)
		}
	}
	if names["GET /api/server/sync"] < 2 {
		t.Errorf("%d provider sync spans in the trace, want the decision's and the evidence's", names["GET /api/server/sync"])
	}
}
