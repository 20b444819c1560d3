package tracing

import (
	"context"
	"io"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/facesync/facesync/storage"
)

// Sink wraps an evidence sink so that every upload (PutFile, PutManifest)
// gets a span with the object's key, kind and size.
func Sink(s storage.Sink, tp trace.TracerProvider) storage.Sink {
	return &sink{Sink: s, tr: tp.Tracer(ScopeName)}
}

type sink struct {
	storage.Sink
	tr trace.Tracer
}

func (s *sink) PutFile(ctx context.Context, appID, orderNo, kind string, r io.Reader) (storage.File, error) {
	ctx, span := s.tr.Start(ctx, "storage.PutFile "+kind, trace.WithAttributes(attribute.String("facesync.kind", kind)))
	defer span.End()
	f, err := s.Sink.PutFile(ctx, appID, orderNo, kind, r)
	if err != nil {
		span.SetStatus(codes.Error, "upload failed")
		return f, err
	}
	span.SetAttributes(attribute.String("facesync.object_key", f.Key), attribute.Int64("facesync.size", f.Size))
	return f, nil
}

func (s *sink) PutManifest(ctx context.Context, m *storage.Manifest) (string, error) {
	ctx, span := s.tr.Start(ctx, "storage.PutManifest")
	defer span.End()
	key, err := s.Sink.PutManifest(ctx, m)
	if err != nil {
		span.SetStatus(codes.Error, "manifest not written")
		return key, err
	}
	span.SetAttributes(attribute.String("facesync.object_key", key))
	return key, nil
}
