package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/modelserver"
)

// reference is what projects/defects/train.py wrote: PyTorch's own predictions on
// the evaluation images, with the pre-processing the model was trained with.
type reference struct {
	ModelSHA256 string  `json:"model_sha256"`
	Confidence  float64 `json:"confidence"`
	Predictions map[string][]struct {
		Label string     `json:"label"`
		Score float64    `json:"score"`
		Box   [4]float64 `json:"box"` // xMin, xMax, yMin, yMax, normalised
	} `json:"predictions"`
}

func loadReference(t *testing.T) reference {
	t.Helper()
	var ref reference
	if err := json.Unmarshal([]byte(mustRead(t, "../../projects/defects/eval/reference.json")), &ref); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(mustRead(t, "../../projects/defects/model/defects.onnx")))
	if hex.EncodeToString(sum[:]) != ref.ModelSHA256 {
		t.Fatalf("eval/reference.json was made with another model (sha256 %s): run make example to retrain and re-export both", ref.ModelSHA256[:12])
	}
	return ref
}

func iou(a, b [4]float64) float64 {
	ix := math.Max(0, math.Min(a[1], b[1])-math.Max(a[0], b[0]))
	iy := math.Max(0, math.Min(a[3], b[3])-math.Max(a[2], b[2]))
	inter := ix * iy
	union := (a[1]-a[0])*(a[3]-a[2]) + (b[1]-b[0])*(b[3]-b[2]) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

type found struct {
	label string
	score float64
	box   [4]float64
}

// sameAsPyTorch holds visionstack's detections of one image to PyTorch's: the same
// boxes (IoU ≥ 0.99), labels and scores (within 1e-3), one for one, above threshold;
// a score within 1e-3 of the threshold may fall on either side.
func sameAsPyTorch(t *testing.T, via, name string, ref reference, got []found, threshold float64) {
	t.Helper()
	used := make([]bool, len(got))
	for _, p := range ref.Predictions[name] {
		if p.Score < threshold-1e-3 {
			continue
		}
		ok := false
		for i, g := range got {
			if !used[i] && g.label == p.Label && iou(g.box, p.Box) >= 0.99 && math.Abs(g.score-p.Score) <= 1e-3 {
				used[i], ok = true, true
				break
			}
		}
		if !ok && p.Score >= threshold+1e-3 {
			t.Errorf("%s, %s: PyTorch finds %s %.4f at %v; visionstack: %v", via, name, p.Label, p.Score, p.Box, got)
		}
	}
	for i, g := range got {
		if !used[i] && g.score >= threshold+1e-3 {
			t.Errorf("%s, %s: visionstack finds %s %.4f at %v that PyTorch does not", via, name, g.label, g.score, g.box)
		}
	}
}

// Issue 25: a team's own model gives the answers of the framework that trained it.
// projects/defects' model was trained and exported by train.py (PyTorch), which also
// wrote PyTorch's own predictions on fresh evaluation images; `visionstack run` on
// those images, and `model serve` behind the Vertex contract, must give the same
// boxes, labels and scores. This is the test that the pre-processing (letterbox,
// bilinear resize, scale) and the decoding match training.
func TestOwnModelMatchesPyTorch(t *testing.T) {
	ref := loadReference(t)
	out := t.TempDir()
	if o, err := runCLI(t, "--root", "../..", "run", "--project", "defects", "--out", out, "--no-progress", "../../projects/defects/eval"); err != nil {
		t.Fatalf("run: %v\n%s", err, o)
	}
	store, err := sqlite.Open(filepath.Join(out, "visionstack.db"))
	must(t, err)
	defer store.Close()
	jobs, err := store.List(context.Background(), meta.Filter{})
	must(t, err)
	if len(jobs) != len(ref.Predictions) {
		t.Fatalf("%d jobs for %d evaluation images", len(jobs), len(ref.Predictions))
	}
	cfg, err := config.LoadFile("../../projects/defects/project.yaml")
	must(t, err)
	threshold := *cfg.Pipeline.Analyses[0].MinConfidence
	boxes := 0
	for _, j := range jobs {
		if j.State != meta.StateDone || len(j.Results) != 1 {
			t.Fatalf("%s: %s %v", j.Source.Object, j.State, j.Reason)
		}
		var got []found
		for _, d := range j.Results[0].Detections {
			got = append(got, found{d.Label, d.Confidence, [4]float64{d.Box.XMin, d.Box.XMax, d.Box.YMin, d.Box.YMax}})
		}
		boxes += len(got)
		sameAsPyTorch(t, "run", filepath.Base(j.Source.Object), ref, got, threshold)
	}
	if boxes == 0 {
		t.Fatal("no defect found on any evaluation image")
	}

	// model serve, as Vertex AI would run visionstack's image with this file.
	r, _ := config.ParseModel("onnx:../../projects/defects/model/defects.onnx")
	m, limits, id, err := servedModel(context.Background(), r, `{"resize":"letterbox"}`)
	must(t, err)
	defer m.Close()
	hs := httptest.NewServer(modelserver.Handler(m, modelserver.Options{Routes: modelserver.RoutesFromEnv(), ModelID: id, Limits: limits}))
	defer hs.Close()
	for name := range ref.Predictions {
		img, err := os.ReadFile(filepath.Join("../../projects/defects/eval", name))
		must(t, err)
		body, _ := json.Marshal(modelserver.PredictRequest{Instances: []model.Instance{{Content: base64.StdEncoding.EncodeToString(img), MimeType: "image/png"}},
			Parameters: model.Parameters{ConfidenceThreshold: ref.Confidence, MaxPredictions: 100}})
		resp, err := http.Post(hs.URL+"/predict", "application/json", bytes.NewReader(body))
		must(t, err)
		var pr modelserver.PredictResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(pr.Predictions) != 1 {
			t.Fatalf("model serve, %s: %d %v", name, resp.StatusCode, err)
		}
		p := pr.Predictions[0]
		var got []found
		for i := range p.Confidences {
			got = append(got, found{p.DisplayNames[i], p.Confidences[i], p.BBoxes[i]})
		}
		sameAsPyTorch(t, "model serve", name, ref, got, ref.Confidence)
	}
}

// model inspect says what visionstack reads of a file and what to paste.
func TestModelInspect(t *testing.T) {
	out, err := runCLI(t, "model", "inspect", "../../projects/defects/model/defects.onnx")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"input     images [1 3 128 128] float", "output    output0 [1 6 256] float", "layout    NCHW, 128×128",
		"format    yolov8", "labels    scratch, spot", "metadata  task: detect", `model: "onnx:defects.onnx"`, "format: automl-detection"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}
