package analyze_test

import (
	"context"
	"testing"

	"github.com/visionstack/visionstack/runtime/analyze"
	"github.com/visionstack/visionstack/runtime/config"
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
