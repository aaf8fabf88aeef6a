package model

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
