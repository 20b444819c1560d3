package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/facesync/facesync/tasks"
	"github.com/facesync/facesync/worker/orderstore"
)

// otlpReceiver is the OpenTelemetry collector's OTLP/HTTP traces endpoint
// on loopback, decoding what it gets with the OTLP protobuf types.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	bad   []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		o.bad = append(o.bad, fmt.Sprintf("%s %s %s: %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// trace returns the spans received for the trace id (hex).
func (o *otlpReceiver) trace(id string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if fmt.Sprintf("%x", s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

// TestTracesOverOTLP: the built binary with OTEL_EXPORTER_OTLP_ENDPOINT
// set exports the spans of one order, enqueued by a plain asynq client
// with a traceparent header, to an OTLP receiver: the partner's trace is
// continued from the decision to the stored evidence.
func TestTracesOverOTLP(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TIDATRC1")
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	s.startWorker("OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=facesync-test")

	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	o := order{orderNo: "trace-1", status: orderstore.StatusPassed, evidence: orderstore.EvidenceStored}
	p := tasks.FetchResult{AppID: s.app, OrderNo: o.orderNo}
	if _, err := tasks.Enqueue(context.Background(), s.client, p, tasks.Headers(map[string]string{"traceparent": "00-" + traceID + "-" + parent + "-01"})); err != nil {
		t.Fatal(err)
	}
	s.check([]order{o}, time.Minute)

	want := []string{tasks.TypeFetchResult, tasks.TypeFetchEvidence, "GET /api/server/sync", "storage.PutFile photo", "storage.PutFile video", "storage.PutManifest", "redis EVALSHA"}
	var got map[string]int
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = map[string]int{}
		for _, sp := range recv.trace(traceID) {
			got[sp.Name]++
		}
		missing := 0
		for _, n := range want {
			if got[n] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the receiver has spans %v of trace %s, want each of %v (bad requests: %v)", got, traceID, want, recv.bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lines []string
	for _, sp := range recv.trace(traceID) {
		if fmt.Sprintf("%x", sp.ParentSpanId) == parent && sp.Name != tasks.TypeFetchResult {
			t.Errorf("span %s hangs off the partner's span, want only %s to", sp.Name, tasks.TypeFetchResult)
		}
		lines = append(lines, fmt.Sprintf("%d %s", sp.StartTimeUnixNano, sp.Name))
		for _, kv := range sp.Attributes {
			v := kv.Value.String()
			if strings.Contains(v, s.secret) || strings.Contains(v, "sign=") || strings.Contains(v, fakeIDNo) || strings.Contains(v, fakeName) {
				t.Errorf("span %s attribute %s = %s holds a secret or personal data", sp.Name, kv.Key, v)
			}
		}
	}
	sort.Strings(lines)
	t.Logf("spans of trace %s received over OTLP:\n  %s", traceID, strings.Join(lines, "\n  "))
	if len(recv.bad) > 0 {
		t.Errorf("the receiver refused %v", recv.bad)
	}
}
