// Package model calls a computer-vision model over its prediction API: Vertex AI,
// KServe v2, or the built-in face detector. The wire shapes are Vertex AI AutoML's,
// so one parser serves every backend. Backends live in sibling packages.
package model

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/visionstack/visionstack/runtime/fault"
)

// Instance is one input as Vertex AI AutoML image models take it.
type Instance struct {
	Content  string `json:"content"` // base64 of the encoded image
	MimeType string `json:"mimeType,omitempty"`
}

// Parameters as Vertex AI AutoML image models take them.
type Parameters struct {
	ConfidenceThreshold float64 `json:"confidenceThreshold"`
	MaxPredictions      int     `json:"maxPredictions"`
}

// Prediction is an AutoML classification or detection prediction. BBoxes, present
// for detection, are [xMin, xMax, yMin, yMax] normalised to 0..1 — not x1,y1,x2,y2.
type Prediction struct {
	IDs          []string     `json:"ids"`
	DisplayNames []string     `json:"displayNames"`
	Confidences  []float64    `json:"confidences"`
	BBoxes       [][4]float64 `json:"bboxes,omitempty"`
	// Version of the model that answered, and the deployment that served it, from
	// the response around the predictions (not part of the AutoML prediction itself):
	// Vertex's modelVersionId and deployedModelId, KServe's model_version and
	// model_name, the built-in model's own version.
	Version  string `json:"-"`
	Deployed string `json:"-"`
	// Candidates are what an in-process detector also saw below the threshold it was
	// asked for, down to its own floor (the built-in face model's re-check
	// threshold), for the anonymization re-check to reuse on pixels that did not
	// change instead of scanning them again. nil: none given (every remote model).
	Candidates []Candidate `json:"-"`
}

// Candidate is a detection below the asked threshold: label, confidence and the
// normalised box [xMin, xMax, yMin, yMax].
type Candidate struct {
	DisplayName string
	Confidence  float64
	BBox        [4]float64
}

// Predictor is a model endpoint.
type Predictor interface {
	// Predict returns one prediction per instance, in order.
	Predict(ctx context.Context, instances []Instance, params Parameters) ([]Prediction, error)
}

// EachImage is the loop of an in-process model's Predict: each instance's content
// decoded from base64 (a permanent error when it is not) and predicted, in order,
// stopping when ctx ends.
func EachImage(ctx context.Context, instances []Instance, predict func(data []byte) (Prediction, error)) ([]Prediction, error) {
	out := make([]Prediction, 0, len(instances))
	for i, in := range instances {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := base64.StdEncoding.DecodeString(in.Content)
		if err != nil {
			return nil, fault.Permanent(fmt.Errorf("instance %d: content is not base64: %w", i, err))
		}
		pred, err := predict(data)
		if err != nil {
			return nil, fmt.Errorf("instance %d: %w", i, err)
		}
		out = append(out, pred)
	}
	return out, nil
}

// ErrTransient marks errors worth retrying (429, 503, timeouts).
var ErrTransient = errors.New("transient model error")

// Validate checks a prediction's arrays agree and boxes are normalised; a model
// that breaks the contract is a permanent error for that image.
func (p Prediction) Validate(detection bool) error {
	n := len(p.Confidences)
	if len(p.DisplayNames) != n || (len(p.IDs) != 0 && len(p.IDs) != n) {
		return fmt.Errorf("prediction arrays disagree: %d displayNames, %d ids, %d confidences", len(p.DisplayNames), len(p.IDs), n)
	}
	if detection && len(p.BBoxes) != n {
		return fmt.Errorf("detection prediction has %d bboxes for %d confidences", len(p.BBoxes), n)
	}
	for i, b := range p.BBoxes {
		if !(0 <= b[0] && b[0] <= b[1] && b[1] <= 1 && 0 <= b[2] && b[2] <= b[3] && b[3] <= 1) {
			return fmt.Errorf("bbox %d %v is not [xMin, xMax, yMin, yMax] within 0..1", i, b)
		}
	}
	return nil
}
