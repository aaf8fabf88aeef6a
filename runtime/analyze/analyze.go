// Package analyze is the second step: call each configured model with the prepared
// payload and turn AutoML-shaped predictions into labelled, boxed detections.
// Analyses are split by mode: the synchronous API runs the sync ones at once and the
// push path runs the rest.
package analyze

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
)

// Analysis is one configured analysis with its model client.
type Analysis struct {
	Spec      config.Analysis
	Predictor model.Predictor
	Shadow    model.Predictor // nil: none
	// Anonymized: a blur reads its boxes, so maxPredictions does not cap it.
	Anonymized bool
}

// limits are what the model is asked for and how many detections are kept (0: all).
func (an Analysis) limits() (ask, keep int) {
	if an.Anonymized {
		return max(an.Spec.MaxPredictions, config.AnonymizedMaxPredictions), 0
	}
	return an.Spec.MaxPredictions, an.Spec.MaxPredictions
}

// Analyzer runs analyses.
type Analyzer struct {
	analyses []Analysis
	observe  func(ctx context.Context, spec config.Analysis, took time.Duration, version string, err error)
}

// Observe sets a function told of every model call (metrics); set it before use.
// version is the model version that answered ("" on an error or when it did not say).
func (a *Analyzer) Observe(f func(ctx context.Context, spec config.Analysis, took time.Duration, version string, err error)) {
	a.observe = f
}

// New pairs each analysis of the pipeline with the predictor models[spec.Model].
func New(pl config.Pipeline, models map[string]model.Predictor) (*Analyzer, error) {
	a := &Analyzer{}
	for _, s := range pl.Analyses {
		p := models[s.Model]
		if p == nil {
			return nil, fmt.Errorf("analysis %s: no client for model %s", s.Name, s.Model)
		}
		an := Analysis{Spec: s, Predictor: p, Anonymized: pl.Anonymized(s.Name)}
		if s.Shadow != "" {
			if an.Shadow = models[s.Shadow]; an.Shadow == nil {
				return nil, fmt.Errorf("analysis %s: no client for shadow model %s", s.Name, s.Shadow)
			}
		}
		a.analyses = append(a.analyses, an)
	}
	return a, nil
}

// Modes select analyses.
const (
	ModeSync  = "sync"
	ModeAsync = "async"
	ModeAll   = ""
)

// Run runs the analyses of mode (ModeAll: all) on the payload, in config order.
func (a *Analyzer) Run(ctx context.Context, base64Payload, mimeType, mode string) ([]meta.Result, error) {
	return a.run(ctx, base64Payload, mimeType, func(an Analysis) bool { return mode == ModeAll || an.Spec.Mode == mode }, nil)
}

// Remaining runs every analysis without a result in done, and returns done's results
// with the new ones, in config order.
func (a *Analyzer) Remaining(ctx context.Context, base64Payload, mimeType string, done []meta.Result) ([]meta.Result, error) {
	have := map[string]meta.Result{}
	for _, r := range done {
		have[r.Analysis] = r
	}
	return a.run(ctx, base64Payload, mimeType, func(Analysis) bool { return true }, have)
}

func (a *Analyzer) run(ctx context.Context, payload, mimeType string, want func(Analysis) bool, have map[string]meta.Result) ([]meta.Result, error) {
	var out []meta.Result
	for _, an := range a.analyses {
		if !want(an) {
			continue
		}
		if r, ok := have[an.Spec.Name]; ok {
			out = append(out, r)
			continue
		}
		r, err := a.one(ctx, an, payload, mimeType)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// one runs an analysis, and its shadow beside it: the shadow's answer (or error) is
// attached to the result and changes nothing else; the job waits for it at most the
// analysis' timeout.
func (a *Analyzer) one(ctx context.Context, an Analysis, payload, mime string) (meta.Result, error) {
	var shadow chan meta.Result
	if an.Shadow != nil {
		shadow = make(chan meta.Result, 1)
		sa := an
		sa.Spec.Model, sa.Predictor, sa.Shadow = an.Spec.Shadow, an.Shadow, nil
		go func() {
			r, err := a.call(ctx, sa, payload, mime)
			if err != nil {
				r = meta.Result{Analysis: sa.Spec.Name, Model: sa.Spec.Model, Detections: []meta.Detection{}, Error: err.Error()}
			}
			shadow <- r
		}()
	}
	r, err := a.call(ctx, an, payload, mime)
	if shadow != nil {
		s := <-shadow
		if err == nil {
			r.Shadow = &s
		}
	}
	return r, err
}

func (a *Analyzer) call(ctx context.Context, an Analysis, payload, mime string) (meta.Result, error) {
	s := an.Spec
	ctx, cancel := context.WithTimeout(ctx, s.Timeout.Duration)
	defer cancel()
	ask, keep := an.limits()
	start := time.Now()
	preds, err := an.Predictor.Predict(ctx, []model.Instance{{Content: payload, MimeType: mime}},
		model.Parameters{ConfidenceThreshold: *s.MinConfidence, MaxPredictions: ask})
	latency := time.Since(start)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", model.ErrTransient, err)
	}
	if a.observe != nil {
		version := ""
		if err == nil && len(preds) > 0 {
			version = preds[0].Version
		}
		a.observe(ctx, s, latency, version, err)
	}
	if err != nil {
		return meta.Result{}, fmt.Errorf("analyze %s with %s: %w", s.Name, s.Model, err)
	}
	if len(preds) != 1 {
		return meta.Result{}, fmt.Errorf("%w: analyze %s: model returned %d predictions for 1 instance", model.ErrConfig, s.Name, len(preds))
	}
	detection := s.Format == "automl-detection"
	if err := preds[0].Validate(detection); err != nil {
		return meta.Result{}, fmt.Errorf("%w: analyze %s: %w", model.ErrConfig, s.Name, err)
	}
	return meta.Result{Analysis: s.Name, Model: s.Model, Detections: Detections(preds[0], *s.MinConfidence, keep),
		LatencyMS: float64(latency.Microseconds()) / 1000, ModelVersion: preds[0].Version, DeployedModel: preds[0].Deployed,
		Candidates: candidates(preds[0], *s.MinConfidence)}, nil
}

// candidates are the prediction's candidates and its detections below minConf (an
// analysis' threshold can be above the model's): all it saw below what the analysis
// keeps. nil when the model gave no candidates.
func candidates(p model.Prediction, minConf float64) []meta.Detection {
	if p.Candidates == nil {
		return nil
	}
	out := []meta.Detection{}
	for i, c := range p.Confidences {
		if c < minConf && i < len(p.BBoxes) {
			out = append(out, meta.Detection{Label: p.DisplayNames[i], Confidence: c, Box: box(p.BBoxes[i])})
		}
	}
	for _, c := range p.Candidates {
		out = append(out, meta.Detection{Label: c.DisplayName, Confidence: c.Confidence, Box: box(c.BBox)})
	}
	return out
}

// box is an AutoML box, [xMin, xMax, yMin, yMax].
func box(b [4]float64) *meta.Box {
	return &meta.Box{XMin: b[0], XMax: b[1], YMin: b[2], YMax: b[3]}
}

// Detections converts a validated prediction, keeping those at or above minConf,
// strongest first as the model ordered them, at most limit (0: all).
func Detections(p model.Prediction, minConf float64, limit int) []meta.Detection {
	out := []meta.Detection{}
	for i, c := range p.Confidences {
		if c < minConf {
			continue
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		d := meta.Detection{Label: p.DisplayNames[i], Confidence: c}
		if i < len(p.BBoxes) {
			d.Box = box(p.BBoxes[i])
		}
		out = append(out, d)
	}
	return out
}
