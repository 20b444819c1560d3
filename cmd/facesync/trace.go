package main

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/facesync/facesync/worker/idasc"
	"github.com/facesync/facesync/worker/tracing"
)

// tracer returns the tracer provider the OTEL_* variables ask for, or nil
// when they ask for none: then nothing is wrapped and the hot path pays
// nothing. stop flushes the spans still buffered.
func (m *Main) tracer(ctx context.Context, service string) (tp trace.TracerProvider, stop func(), err error) {
	if !tracing.Enabled(m.Getenv) {
		return nil, func() {}, nil
	}
	tp, shutdown, err := tracing.Setup(ctx, m.Getenv, service)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}, nil
}

// idascOptions traces the provider client's calls when tp is set.
func idascOptions(tp trace.TracerProvider) []idasc.Option {
	if tp == nil {
		return nil
	}
	return []idasc.Option{idasc.WithRoundTripper(func(rt http.RoundTripper) http.RoundTripper { return tracing.Transport(rt, tp) })}
}
