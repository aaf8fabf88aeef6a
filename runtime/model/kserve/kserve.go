// Package kserve calls a model over the Open Inference (KServe / Triton v2) protocol:
// POST {model URL}/infer, GET {server}/v2/health/ready. The image goes in as one BYTES
// tensor of base64 content; predictions come back either as a BYTES output
// "predictions" holding one AutoML prediction JSON per instance, or as AutoML-named
// outputs for a single instance: "displayNames" (BYTES), "confidences" (FP32),
// optional "ids" (BYTES) and "bboxes" (FP32, shape [N, 4], [xMin, xMax, yMin, yMax]).
package kserve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/visionstack/visionstack/runtime/model"
)

// Model is a v2-protocol model as a model.Predictor.
type Model struct {
	url     string // …/v2/models/NAME
	client  *http.Client
	backoff model.Backoff
}

var _ model.Predictor = (*Model)(nil)

// New targets the model URL http(s)://host/v2/models/NAME.
func New(modelURL string, client *http.Client) (*Model, error) {
	u, err := url.Parse(modelURL)
	if err != nil || !strings.Contains(u.Path, "/v2/models/") {
		return nil, fmt.Errorf("kserve model URL %q: want http(s)://host/v2/models/NAME", modelURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	return &Model{url: strings.TrimSuffix(modelURL, "/"), client: client}, nil
}

// WithBackoff sets the retries of a transient failure (default model.Backoff's).
func (m *Model) WithBackoff(b model.Backoff) *Model {
	m.backoff = b
	return m
}

// Tensor is one v2 input or output.
type Tensor struct {
	Name     string          `json:"name"`
	Shape    []int           `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// InferRequest is the v2 request body.
type InferRequest struct {
	Inputs     []Tensor       `json:"inputs"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// InferResponse is the v2 answer.
type InferResponse struct {
	ModelName    string   `json:"model_name"`
	ModelVersion string   `json:"model_version,omitempty"`
	Outputs      []Tensor `json:"outputs"`
}

// Ready asks the server's readiness endpoint.
func (m *Model) Ready(ctx context.Context) error {
	base := m.url[:strings.Index(m.url, "/v2/models/")]
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/health/ready", nil)
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", model.ErrTransient, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s not ready (%d)", model.ErrTransient, base, resp.StatusCode)
	}
	return nil
}

// Predict sends the instances as one BYTES tensor.
func (m *Model) Predict(ctx context.Context, instances []model.Instance, params model.Parameters) ([]model.Prediction, error) {
	contents := make([]string, len(instances))
	for i, in := range instances {
		contents[i] = in.Content
	}
	data, _ := json.Marshal(contents)
	body, _ := json.Marshal(InferRequest{
		Inputs:     []Tensor{{Name: "image", Shape: []int{len(instances)}, Datatype: "BYTES", Data: data}},
		Parameters: map[string]any{"confidenceThreshold": params.ConfidenceThreshold, "maxPredictions": params.MaxPredictions},
	})
	var raw []byte
	err := model.Retry(ctx, m.backoff, func(err error) bool { return errors.Is(err, model.ErrTransient) && !errors.Is(err, model.ErrConfig) }, func() (err error) {
		raw, err = m.infer(ctx, body)
		return err
	})
	if err != nil {
		return nil, err
	}
	var ir InferResponse
	if err := json.Unmarshal(raw, &ir); err != nil {
		return nil, fmt.Errorf("%w: kserve %s: not a v2 response: %w", model.ErrConfig, m.url, err)
	}
	preds, err := parse(ir, len(instances))
	if err != nil {
		return nil, fmt.Errorf("%w: kserve %s: %w", model.ErrConfig, m.url, err)
	}
	for i := range preds {
		preds[i].Version, preds[i].Deployed = ir.ModelVersion, ir.ModelName
	}
	return preds, nil
}

// infer makes one call; its error is classified by cause.
func (m *Model) infer(ctx context.Context, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url+"/infer", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, model.Classify(ctx, model.CauseTransient, fmt.Errorf("kserve %s: %w", m.url, err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, model.Classify(ctx, model.CauseTransient, fmt.Errorf("kserve %s: %w", m.url, err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, model.Classify(ctx, model.HTTPCause(resp.StatusCode), fmt.Errorf("kserve %s answered %d: %s", m.url, resp.StatusCode, snippet(raw)))
	}
	return raw, nil
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

func parse(ir InferResponse, n int) ([]model.Prediction, error) {
	out := map[string]Tensor{}
	for _, t := range ir.Outputs {
		out[t.Name] = t
	}
	if t, ok := out["predictions"]; ok {
		var docs []string
		if err := json.Unmarshal(t.Data, &docs); err != nil {
			return nil, fmt.Errorf("output predictions: %w", err)
		}
		preds := make([]model.Prediction, len(docs))
		for i, d := range docs {
			if err := json.Unmarshal([]byte(d), &preds[i]); err != nil {
				return nil, fmt.Errorf("prediction %d: %w", i, err)
			}
		}
		if len(preds) != n {
			return nil, fmt.Errorf("%d predictions for %d instances", len(preds), n)
		}
		return preds, nil
	}
	if n != 1 {
		return nil, fmt.Errorf("named AutoML outputs carry one instance; send one at a time or return a \"predictions\" output")
	}
	var p model.Prediction
	if err := decodeTensor(out, "displayNames", &p.DisplayNames, true); err != nil {
		return nil, err
	}
	if err := decodeTensor(out, "confidences", &p.Confidences, true); err != nil {
		return nil, err
	}
	if err := decodeTensor(out, "ids", &p.IDs, false); err != nil {
		return nil, err
	}
	var flat []float64
	if err := decodeTensor(out, "bboxes", &flat, false); err != nil {
		return nil, err
	}
	if len(flat)%4 != 0 {
		return nil, fmt.Errorf("bboxes has %d values, not a multiple of 4", len(flat))
	}
	for i := 0; i+3 < len(flat); i += 4 {
		p.BBoxes = append(p.BBoxes, [4]float64{flat[i], flat[i+1], flat[i+2], flat[i+3]})
	}
	return []model.Prediction{p}, nil
}

func decodeTensor(out map[string]Tensor, name string, dst any, required bool) error {
	t, ok := out[name]
	if !ok {
		if required {
			return fmt.Errorf("no output %q", name)
		}
		return nil
	}
	if err := json.Unmarshal(t.Data, dst); err != nil {
		return fmt.Errorf("output %s: %w", name, err)
	}
	return nil
}
