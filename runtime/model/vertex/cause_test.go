package vertex_test

import (
	"context"
	"errors"
	"testing"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/vertex"
)

// failingVertex answers every Predict with one gRPC code.
type failingVertex struct {
	aiplatformpb.UnimplementedPredictionServiceServer
	code codes.Code
}

func (f *failingVertex) Predict(context.Context, *aiplatformpb.PredictRequest) (*aiplatformpb.PredictResponse, error) {
	return nil, status.Error(f.code, "from the fake endpoint")
}

// Every gRPC code through the real aiplatform client: only a refusal of the request
// itself quarantines the image; an undeployed endpoint or an IAM mistake is
// configuration trouble, retried; cancellation and deadlines are transient.
func TestErrorsClassifiedByCause(t *testing.T) {
	want := map[codes.Code]model.Cause{
		codes.Canceled: model.CauseTransient, codes.Unknown: model.CauseTransient, codes.DeadlineExceeded: model.CauseTransient,
		codes.ResourceExhausted: model.CauseTransient, codes.Aborted: model.CauseTransient, codes.Internal: model.CauseTransient,
		codes.Unavailable: model.CauseTransient, codes.DataLoss: model.CauseTransient, codes.AlreadyExists: model.CauseTransient,
		codes.Unauthenticated: model.CauseConfig, codes.PermissionDenied: model.CauseConfig, codes.NotFound: model.CauseConfig,
		codes.FailedPrecondition: model.CauseConfig, codes.Unimplemented: model.CauseConfig,
		codes.InvalidArgument: model.CauseInput, codes.OutOfRange: model.CauseInput,
	}
	for code, cause := range want {
		t.Run(code.String(), func(t *testing.T) {
			m := dialServer(t, &failingVertex{code: code}, vertex.Options{Attempts: 1})
			_, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{})
			got := model.CauseTransient
			switch {
			case fault.IsPermanent(err):
				got = model.CauseInput
			case errors.Is(err, model.ErrConfig):
				got = model.CauseConfig
			case !errors.Is(err, model.ErrTransient):
				t.Fatalf("%v is neither permanent nor transient", err)
			}
			if got != cause {
				t.Errorf("%s: cause %d, want %d (%v)", code, got, cause, err)
			}
		})
	}
}
