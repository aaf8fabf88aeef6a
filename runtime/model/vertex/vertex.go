// Package vertex calls a Vertex AI endpoint through the aiplatform PredictionClient
// (gRPC, apiv1), with a per-call timeout, retries with exponential backoff and jitter
// on 429/503, and a request-size check before sending. Predictions are parsed as
// AutoML image classification or detection.
package vertex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/visionstack/visionstack/runtime/model"
)

// Options tune the client.
type Options struct {
	Endpoint     string        // projects/P/locations/L/endpoints/E
	MaxRequest   int           // bytes; Vertex's shared public endpoints cap near 1.5 MB
	Attempts     int           // tries on 429/503 (default 4)
	MinBackoff   time.Duration // first retry delay (default 200ms)
	MaxBackoff   time.Duration // cap (default 5s)
	ClientOption []option.ClientOption
}

// Model is a Vertex AI endpoint as a model.Predictor.
type Model struct {
	client *aiplatform.PredictionClient
	o      Options
}

var _ model.Predictor = (*Model)(nil)

// New dials the endpoint's region (LOCATION-aiplatform.googleapis.com) unless
// ClientOption names another endpoint.
func New(ctx context.Context, o Options) (*Model, error) {
	if o.MaxRequest <= 0 {
		o.MaxRequest = 1_500_000
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 5 * time.Second
	}
	opts := append([]option.ClientOption{option.WithEndpoint(location(o.Endpoint) + "-aiplatform.googleapis.com:443")}, o.ClientOption...)
	c, err := aiplatform.NewPredictionClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("vertex client for %s: %w", o.Endpoint, err)
	}
	return &Model{client: c, o: o}, nil
}

// location extracts L from projects/P/locations/L/endpoints/E.
func location(endpoint string) string {
	parts := strings.Split(endpoint, "/")
	if len(parts) == 6 && parts[2] == "locations" {
		return parts[3]
	}
	return "us-central1"
}

// Close closes the connection.
func (m *Model) Close() error { return m.client.Close() }

// Predict sends the instances, retrying transient failures.
func (m *Model) Predict(ctx context.Context, instances []model.Instance, params model.Parameters) ([]model.Prediction, error) {
	req, err := Request(m.o.Endpoint, instances, params)
	if err != nil {
		return nil, err
	}
	if n, err := BodySize(instances, params); err != nil || n > m.o.MaxRequest {
		return nil, fmt.Errorf("%w: vertex request of %d bytes exceeds %d: lower prepare.payloadLimit", model.ErrConfig, n, m.o.MaxRequest)
	}
	var resp *aiplatformpb.PredictResponse
	err = model.Retry(ctx, model.Backoff{Attempts: m.o.Attempts, Min: m.o.MinBackoff, Max: m.o.MaxBackoff}, retryable, func() (err error) {
		resp, err = m.client.Predict(ctx, req)
		return err
	})
	if err != nil {
		return nil, model.Classify(ctx, model.GRPCCause(status.Code(err)), fmt.Errorf("vertex %s: %w", m.o.Endpoint, err))
	}
	return Parse(resp)
}

// BodySize is the size of the JSON body Vertex AI forwards to the model's container,
// {"instances": […], "parameters": {…}}: the 1.5 MB cap applies to it, not to the
// gRPC message we send (a few bytes smaller an instance).
func BodySize(instances []model.Instance, params model.Parameters) (int, error) {
	raw, err := json.Marshal(struct {
		Instances  []model.Instance `json:"instances"`
		Parameters model.Parameters `json:"parameters"`
	}{instances, params})
	return len(raw), err
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Internal:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// Request builds a PredictRequest in the AutoML image shape.
func Request(endpoint string, instances []model.Instance, params model.Parameters) (*aiplatformpb.PredictRequest, error) {
	req := &aiplatformpb.PredictRequest{Endpoint: endpoint}
	for _, in := range instances {
		v, err := toValue(in)
		if err != nil {
			return nil, err
		}
		req.Instances = append(req.Instances, v)
	}
	p, err := toValue(params)
	if err != nil {
		return nil, err
	}
	req.Parameters = p
	return req, nil
}

func toValue(v any) (*structpb.Value, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	return structpb.NewValue(generic)
}

// Parse reads AutoML predictions: ids (strings), displayNames, confidences and, for
// detection, bboxes as [xMin, xMax, yMin, yMax].
func Parse(resp *aiplatformpb.PredictResponse) ([]model.Prediction, error) {
	out := make([]model.Prediction, 0, len(resp.GetPredictions()))
	for i, v := range resp.GetPredictions() {
		raw, err := v.MarshalJSON()
		if err != nil {
			return nil, err
		}
		var p model.Prediction
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("%w: prediction %d is not an AutoML image prediction: %w", model.ErrConfig, i, err)
		}
		p.Version, p.Deployed = resp.GetModelVersionId(), resp.GetDeployedModelId()
		if m := resp.GetModel(); m != "" && p.Version != "" {
			p.Version = m + "@" + p.Version // projects/P/locations/L/models/M@3
		}
		out = append(out, p)
	}
	return out, nil
}
