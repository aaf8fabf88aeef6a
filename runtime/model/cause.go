package model

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/visionstack/visionstack/runtime/fault"
)

// ErrConfig marks a model error that is the deployment's or the access's fault — an
// endpoint not found or not deployed, missing permission, bad credentials — never the
// image's. It wraps ErrTransient: the message is retried (and dead-lettered if it
// lasts) instead of quarantining every image of the window; the pipeline logs it at
// error level and counts it apart.
var ErrConfig = fmt.Errorf("%w: model configuration or access trouble", ErrTransient)

// Cause is why a model call failed, which decides what happens to the image.
type Cause int

const (
	// CauseTransient: overload, outage, timeout, cancellation; retried.
	CauseTransient Cause = iota
	// CauseConfig: the model's deployment or access; retried, loudly (ErrConfig).
	CauseConfig
	// CauseInput: the model refused this image; permanent, the image is quarantined.
	CauseInput
)

// GRPCCause classifies a gRPC status code (Vertex AI). Only a refusal of the request
// itself (InvalidArgument, OutOfRange) is the image's fault.
func GRPCCause(c codes.Code) Cause {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return CauseInput
	case codes.Unauthenticated, codes.PermissionDenied, codes.NotFound, codes.FailedPrecondition, codes.Unimplemented:
		return CauseConfig
	}
	return CauseTransient // Canceled, DeadlineExceeded, Unavailable, ResourceExhausted, Aborted, Internal, Unknown, …
}

// HTTPCause classifies an HTTP status (KServe / Triton v2). Only a refusal of the
// body itself (400, 413, 415, 422) is the image's fault.
func HTTPCause(status int) Cause {
	switch {
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge,
		status == http.StatusUnsupportedMediaType, status == http.StatusUnprocessableEntity:
		return CauseInput
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests, status >= 500:
		return CauseTransient
	}
	return CauseConfig // 401, 403, 404, 405, 409, 412, …: the deployment, not the image
}

// Classify wraps err by its cause. A call whose context ended (the caller's deadline,
// a shutdown) is always transient, whatever the code.
func Classify(ctx context.Context, cause Cause, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		cause = CauseTransient
	}
	switch cause {
	case CauseInput:
		return fault.Permanent(err)
	case CauseConfig:
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}

// Backoff bounds the retries of one model call.
type Backoff struct {
	Attempts int           // tries in all (default 4)
	Min, Max time.Duration // first delay (default 200ms), cap (default 5s)
}

// Retry calls f until it succeeds, fails in a way retry says will not pass, or has
// been tried b.Attempts times, waiting a doubling delay with jitter between calls: a
// model's brief 429 or 503 costs a few hundred milliseconds, not a delivery attempt.
func Retry(ctx context.Context, b Backoff, retry func(error) bool, f func() error) error {
	if b.Attempts <= 0 {
		b.Attempts = 4
	}
	if b.Min <= 0 {
		b.Min = 200 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = max(5*time.Second, b.Min)
	}
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt >= b.Attempts || !retry(err) {
			return err
		}
		d := b.Min << (attempt - 1)
		if d > b.Max || d <= 0 {
			d = b.Max
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w (after %v)", ErrTransient, ctx.Err(), err)
		case <-time.After(d/2 + time.Duration(rand.Int64N(int64(d/2)+1))):
		}
	}
}
