package tracing

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// RedisHook is a go-redis hook that gives every Lua script run inside a
// trace (the order store's transitions, the ticket cache's) a span. Its
// arguments (records, tickets) are never recorded; commands outside a
// trace (asynq's polling) make no span.
func RedisHook(tp trace.TracerProvider) redis.Hook {
	return redisHook{tr: tp.Tracer(ScopeName)}
}

type redisHook struct{ tr trace.Tracer }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := strings.ToUpper(cmd.Name())
		if !isScript(name) || !trace.SpanContextFromContext(ctx).IsValid() {
			return next(ctx, cmd)
		}
		ctx, span := h.tr.Start(ctx, "redis "+name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "redis"), attribute.String("db.operation.name", name)))
		defer span.End()
		err := next(ctx, cmd)
		if err != nil && err != redis.Nil {
			span.SetStatus(codes.Error, "script failed")
		}
		return err
	}
}

func (redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func isScript(name string) bool {
	return name == "EVALSHA" || name == "EVAL" || name == "EVALSHA_RO" || name == "EVAL_RO"
}
