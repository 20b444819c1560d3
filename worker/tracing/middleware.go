package tracing

import (
	"context"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of task spans.
const (
	AttrTaskID  = attribute.Key("messaging.message.id")
	AttrQueue   = attribute.Key("messaging.destination.name")
	AttrAttempt = attribute.Key("facesync.attempt")
	AttrAppID   = attribute.Key("facesync.app_id")
	AttrOrderNo = attribute.Key("facesync.order_no")
	AttrOutcome = attribute.Key("facesync.outcome")
)

// Middleware starts one span per task attempt, named by the task type,
// continuing the trace of the task's headers (a new trace when there is
// none). The handler's error sets the span's status.
func Middleware(tp trace.TracerProvider) asynq.MiddlewareFunc {
	tr := tp.Tracer(ScopeName)
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			ctx = Extract(ctx, t.Headers())
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			n, _ := asynq.GetRetryCount(ctx)
			ctx, span := tr.Start(ctx, t.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("messaging.system", "asynq"),
					AttrTaskID.String(id), AttrQueue.String(queue), AttrAttempt.Int(n+1)))
			defer span.End()
			err := next.ProcessTask(ctx, t)
			if err != nil {
				span.SetStatus(codes.Error, "attempt failed")
				span.RecordError(err)
			}
			return err
		})
	}
}

// Order names the order on the span of ctx, once the handler has a valid
// payload. App ids and order numbers are no personal data.
func Order(ctx context.Context, appID, orderNo string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() { // no allocation when tracing is off
		span.SetAttributes(AttrAppID.String(appID), AttrOrderNo.String(orderNo))
	}
}
