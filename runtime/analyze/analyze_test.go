package analyze_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/analyze"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
)

// crowdModel returns n faces and records the parameters it was called with.
type crowdModel struct {
	n     int
	asked model.Parameters
}

func (m *crowdModel) Predict(_ context.Context, _ []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	m.asked = p
	pred := model.Prediction{}
	for i := range m.n {
		if p.MaxPredictions > 0 && i >= p.MaxPredictions {
			break
		}
		pred.IDs = append(pred.IDs, "0")
		pred.DisplayNames = append(pred.DisplayNames, "face")
		pred.Confidences = append(pred.Confidences, 0.9)
		x := float64(i) / float64(m.n)
		pred.BBoxes = append(pred.BBoxes, [4]float64{x, x + 0.5/float64(m.n), 0.1, 0.2})
	}
	return []model.Prediction{pred}, nil
}

// maxPredictions caps what an analysis records, except when a blur reads it: a crowd
// is anonymized whole.
func TestMaxPredictionsNeverCapsAnonymization(t *testing.T) {
	for _, c := range []struct {
		name      string
		blur      bool
		wantAsked int
		wantKept  int
	}{
		{"recorded only", false, 10, 10},
		{"read by a blur", true, config.AnonymizedMaxPredictions, 48},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := config.Project{Pipeline: config.Pipeline{Analyses: []config.Analysis{{Name: "faces", Model: "m", Format: "automl-detection", MaxPredictions: 10}}}}
			if c.blur {
				p.Pipeline.Transforms = []config.Transform{{Blur: &config.Blur{Analysis: "faces"}}}
			}
			p.ApplyDefaults()
			m := &crowdModel{n: 48}
			a, err := analyze.New(p.Pipeline, map[string]model.Predictor{"m": m})
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.Run(context.Background(), "", "image/jpeg", analyze.ModeAll)
			if err != nil {
				t.Fatal(err)
			}
			if m.asked.MaxPredictions != c.wantAsked || len(res[0].Detections) != c.wantKept {
				t.Errorf("model asked for %d, %d detections kept; want %d and %d", m.asked.MaxPredictions, len(res[0].Detections), c.wantAsked, c.wantKept)
			}
		})
	}
}

// failing always fails.
type failing struct{}

func (failing) Predict(context.Context, []model.Instance, model.Parameters) ([]model.Prediction, error) {
	return nil, errors.New("503 Service Unavailable")
}

// A shadow model answers beside the stable one: its result is attached to the stable
// result, its failure is recorded there and fails nothing, and nothing else changes.
func TestShadowRunsBesideAndNeverReplaces(t *testing.T) {
	for _, c := range []struct {
		name       string
		shadow     model.Predictor
		wantShadow int
		wantErr    string
	}{
		{"answers", &crowdModel{n: 3}, 3, ""},
		{"fails", failing{}, 0, "503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := config.Project{Pipeline: config.Pipeline{Analyses: []config.Analysis{{Name: "faces", Model: "stable", Shadow: "canary", Format: "automl-detection"}}}}
			p.ApplyDefaults()
			var seen []string
			a, err := analyze.New(p.Pipeline, map[string]model.Predictor{"stable": &crowdModel{n: 1}, "canary": c.shadow})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			a.Observe(func(_ context.Context, s config.Analysis, _ time.Duration, _ string, _ error) {
				mu.Lock()
				seen = append(seen, s.Model)
				mu.Unlock()
			})
			res, err := a.Run(context.Background(), "", "image/jpeg", analyze.ModeAll)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if len(r.Detections) != 1 || r.Model != "stable" || r.Shadow == nil {
				t.Fatalf("result %+v: want the stable model's one detection with a shadow beside it", r)
			}
			if len(r.Shadow.Detections) != c.wantShadow || r.Shadow.Model != "canary" || !strings.Contains(r.Shadow.Error, c.wantErr) {
				t.Errorf("shadow %+v, want %d detections from canary, error containing %q", r.Shadow, c.wantShadow, c.wantErr)
			}
			if out := meta.WithoutShadows(res); out[0].Shadow != nil || res[0].Shadow == nil {
				t.Error("WithoutShadows must drop the shadow from a copy only")
			}
			slices.Sort(seen)
			if !slices.Equal(seen, []string{"canary", "stable"}) {
				t.Errorf("model calls observed for %v, want both (metrics label the shadow's by its model)", seen)
			}
		})
	}
	// The stable model failing fails the analysis, whatever the shadow said.
	p := config.Project{Pipeline: config.Pipeline{Analyses: []config.Analysis{{Name: "faces", Model: "stable", Shadow: "canary", Format: "automl-detection"}}}}
	p.ApplyDefaults()
	a, _ := analyze.New(p.Pipeline, map[string]model.Predictor{"stable": failing{}, "canary": &crowdModel{n: 2}})
	if _, err := a.Run(context.Background(), "", "image/jpeg", analyze.ModeAll); err == nil {
		t.Error("the stable model failed, the analysis did not")
	}
}
