package builtin_test

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/testdata/photos"
)

var sweep = flag.Bool("sweep", false, "print recall and false alarms for a grid of detector parameters")

type sample struct {
	name string
	data []byte // the photo fitted to 1024 px, oriented, as a JPEG
	w, h int
	gt   [][4]float64 // normalised [xMin, xMax, yMin, yMax]
}

func loadSamples(t testing.TB) []sample {
	truth, err := photos.FaceTruth()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	add := func(file string, boxes [][4]float64) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := imaging.Limits{}.Thumbnail(data, 1024, imaging.CropNone, true)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		enc, err := img.JPEG(95, false)
		if err != nil {
			t.Fatal(err)
		}
		w, h := img.Width(), img.Height()
		s := sample{name: filepath.Base(file), data: enc, w: w, h: h}
		for _, b := range boxes {
			s.gt = append(s.gt, [4]float64{b[0] / float64(w), (b[0] + b[2]) / float64(w), b[1] / float64(h), (b[1] + b[3]) / float64(h)})
		}
		out = append(out, s)
	}
	for _, tr := range truth {
		add(tr.File, tr.Boxes)
	}
	for _, f := range photos.NoFaces() {
		add(f, nil)
	}
	return out
}

func iou(a, b [4]float64) float64 {
	ix := max(0, min(a[1], b[1])-max(a[0], b[0]))
	iy := max(0, min(a[3], b[3])-max(a[2], b[2]))
	inter := ix * iy
	union := (a[1]-a[0])*(a[3]-a[2]) + (b[1]-b[0])*(b[3]-b[2]) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

type score struct{ found, faces, falseAlarms, noFaceAlarms int }

// evaluate matches detections to hand-drawn boxes (IoU ≥ 0.3).
func evaluate(m *builtin.Model, samples []sample, threshold float64) (score, []string) {
	var s score
	var lines []string
	for _, smp := range samples {
		preds, err := m.Predict(context.Background(), []model.Instance{{Content: base64.StdEncoding.EncodeToString(smp.data)}},
			model.Parameters{ConfidenceThreshold: threshold, MaxPredictions: 100})
		if err != nil {
			panic(err)
		}
		pred := preds[0]
		used := make([]bool, len(pred.BBoxes))
		found := 0
		for _, g := range smp.gt {
			for i, b := range pred.BBoxes {
				if !used[i] && iou(g, b) >= 0.3 {
					used[i] = true
					found++
					break
				}
			}
		}
		fa := 0
		for _, u := range used {
			if !u {
				fa++
			}
		}
		s.found += found
		s.faces += len(smp.gt)
		s.falseAlarms += fa
		if len(smp.gt) == 0 {
			s.noFaceAlarms += fa
		}
		lines = append(lines, fmt.Sprintf("%-22s faces %d found %d false alarms %d", smp.name, len(smp.gt), found, fa))
	}
	return s, lines
}

// TestRecallOnSamples measures the built-in model on the hand-boxed sample photos,
// with each detector. The floors are what they reach today (README "Anonymization");
// a change that loses faces fails here.
func TestRecallOnSamples(t *testing.T) {
	for _, c := range []struct {
		name      string
		params    builtin.Params
		minRecall float64
		maxAlarms int
		// on the no-face controls (-1: not held): make demo shows no box on the cat
		// or the coffee (issue 26; the default put one on the cat and two on the cup)
		maxNoFace int
	}{
		{"blazeface (default)", builtin.DefaultParams, minRecall, maxFalseAlarms, 0},
		{"pigo", builtin.PigoParams, minRecallPigo, maxFalseAlarmsPigo, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := builtin.New(c.params)
			if err != nil {
				t.Fatal(err)
			}
			s, lines := evaluate(m, loadSamples(t), 0.5)
			for _, l := range lines {
				t.Log(l)
			}
			recall := float64(s.found) / float64(s.faces)
			t.Logf("recall %d/%d = %.2f, false alarms %d (on no-face controls: %d)", s.found, s.faces, recall, s.falseAlarms, s.noFaceAlarms)
			if recall < c.minRecall {
				t.Errorf("recall %.2f fell below %.2f", recall, c.minRecall)
			}
			if s.falseAlarms > c.maxAlarms {
				t.Errorf("%d false alarms, more than %d", s.falseAlarms, c.maxAlarms)
			}
			if c.maxNoFace >= 0 && s.noFaceAlarms > c.maxNoFace {
				t.Errorf("%d false alarms on the no-face controls (chelsea.png, coffee.png), more than %d", s.noFaceAlarms, c.maxNoFace)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	if !*sweep {
		t.Skip("parameter sweep for tuning: go test ./runtime/model/builtin -run Sweep -sweep -v")
	}
	samples := loadSamples(t)
	third := []float64{0, 1.0 / 32, 31.0 / 32}
	for _, angles := range [][]float64{{0}, third} {
		for _, shift := range []float64{0.05, 0.1} {
			for _, scale := range []float64{1.05, 1.1} {
				p := builtin.PigoParams
				p.Angles, p.ShiftFactor, p.ScaleFactor = angles, shift, scale
				m, _ := builtin.New(p)
				start := time.Now()
				evaluate(m, samples, 0)
				per := time.Since(start) / time.Duration(len(samples))
				for _, th := range []float64{0.3, 0.4, 0.5, 0.6, 0.7} {
					s, _ := evaluate(m, samples, th)
					t.Logf("angles %d shift %.2f scale %.2f th %.1f: found %d/%d false %d (%v/image)",
						len(angles), shift, scale, th, s.found, s.faces, s.falseAlarms, per.Round(time.Millisecond))
				}
			}
		}
	}
}

func TestPredictContract(t *testing.T) {
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	preds, err := m.Predict(context.Background(), []model.Instance{{Content: base64.StdEncoding.EncodeToString(data), MimeType: "image/jpeg"}},
		model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(preds) != 1 || len(preds[0].BBoxes) == 0 {
		t.Fatalf("no face in grace_hopper.jpg: %+v", preds)
	}
	if err := preds[0].Validate(true); err != nil {
		t.Fatal(err)
	}
	if preds[0].DisplayNames[0] != "face" {
		t.Fatalf("label %q", preds[0].DisplayNames[0])
	}
	if _, err := m.Predict(context.Background(), []model.Instance{{Content: "!!not base64"}}, model.Parameters{}); err == nil {
		t.Fatal("accepted non-base64 content")
	}
}
