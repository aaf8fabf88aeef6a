package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// W3C trace context (traceparent, tracestate): what Cloud Run sends and Cloud Trace
// reads. Message attributes carry it across the queue, so sync → publish → push is
// one trace.
var propagator = propagation.TraceContext{}

// Inject writes ctx's span context into message attributes.
func Inject(ctx context.Context, attrs map[string]string) {
	propagator.Inject(ctx, propagation.MapCarrier(attrs))
}

// Extract returns ctx with the span context carried in message attributes, if any.
func Extract(ctx context.Context, attrs map[string]string) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(attrs))
}

// ExtractHTTP returns ctx with the span context of an incoming request's headers.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

type keyCtx struct{}

// WithKey puts an image's idempotency key in ctx: every log line written with ctx
// then carries it.
func WithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// KeyFrom returns the key WithKey put in ctx.
func KeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(keyCtx{}).(string)
	return k
}
