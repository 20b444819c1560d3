// Package tracing gives facesync OpenTelemetry traces: one trace from a
// partner's enqueue to the stored evidence. It is off unless the standard
// OTEL_* variables name an OTLP endpoint; off, every span is a no-op and
// the hot path pays nothing measurable.
//
// The W3C trace context (traceparent, tracestate) travels in asynq task
// headers, so it survives the second between the decision and the
// evidence task, and a partner that enqueues with a plain asynq client and
// a traceparent header has its trace continued.
//
// Spans:
//
//	faceid:fetch_result, faceid:fetch_evidence, faceid:deliver_webhook  one per task attempt (Middleware)
//	GET /api/server/sync (and the token and ticket calls)               one per provider call, without the query (Transport)
//	storage.PutFile photo|video, storage.PutManifest                    one per evidence upload (Sink)
//	redis EVALSHA                                                        one per Redis script inside a trace (RedisHook)
//
// No span or attribute holds a secret, token, ticket, sign, API key, full
// id number or name: provider calls carry them in the query string, which
// is never recorded, and task spans name only the order.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every facesync span.
const ScopeName = "github.com/facesync/facesync"

// propagator is the W3C trace context, the one the contract names.
var propagator = propagation.TraceContext{}

// Enabled reports whether getenv's OTEL_* variables ask for traces: an
// OTLP endpoint is set, the SDK is not disabled, and the traces exporter is
// not "none".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) == "none" {
		return false
	}
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" ||
		strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != ""
}

// Setup returns the tracer provider the OTEL_* variables ask for, and how
// to flush and stop it. Without an endpoint it is a no-op provider. Only
// OTLP over HTTP (protobuf) is built in: OTEL_EXPORTER_OTLP_PROTOCOL grpc
// is refused with an error naming the variable. The exporter reads the
// standard variables itself (endpoint, headers, timeout, compression);
// service.name defaults to service.
func Setup(ctx context.Context, getenv func(string) string, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if !Enabled(getenv) {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(v)); p != "" && p != "http/protobuf" {
			return nil, nil, fmt.Errorf("%s: %q is not supported; facesync exports traces over OTLP http/protobuf", v, p)
		}
	}
	// The endpoint is taken from getenv (the command's environment); the
	// exporter reads the other OTEL_EXPORTER_OTLP_* settings itself.
	var opts []otlptracehttp.Option
	if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	} else if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); u != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(u, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service)))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// WithFromEnv may set service.name from OTEL_SERVICE_NAME; it wins.
	if env, eerr := resource.New(ctx, resource.WithFromEnv()); eerr == nil {
		res, _ = resource.Merge(res, env)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Inject returns the trace context of ctx as task headers (traceparent,
// tracestate), or nil when ctx carries no sampled span.
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	h := map[string]string{}
	propagator.Inject(ctx, propagation.MapCarrier(h))
	return h
}

// Extract returns ctx with the remote span context of headers, when they
// carry one.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(headers))
}

// HTTPPropagator is the propagator for HTTP requests (the partner API).
func HTTPPropagator() propagation.TextMapPropagator { return propagator }
