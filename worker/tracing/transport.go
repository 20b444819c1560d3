package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps base so that every request made inside a trace gets a
// client span named "METHOD /path". Neither the query string (where the
// provider's app secret, token, ticket and sign travel) nor any header is
// recorded: only method, path, host and status.
func Transport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return &transport{base: base, tr: tp.Tracer(ScopeName)}
}

type transport struct {
	base http.RoundTripper
	tr   trace.Tracer
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return t.base.RoundTrip(req) // a call outside any trace: a refresh in the background
	}
	ctx, span := t.tr.Start(ctx, req.Method+" "+req.URL.Path, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method),
			attribute.String("url.path", req.URL.Path), attribute.String("server.address", req.URL.Host)))
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		span.SetStatus(codes.Error, "request failed")
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	// The span covers the headers; a body streamed for minutes (evidence)
	// is covered by the upload spans.
	span.End()
	return resp, nil
}
