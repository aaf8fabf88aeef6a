package onnx

import (
	"math"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/model"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// A 640×320 image letterboxed into 320×320: scale 0.5, the image 320×160 at y 80.
var letterboxed = Frame{W: 640, H: 320, ScaleX: 0.5, ScaleY: 0.5, PadX: 0, PadY: 80, InW: 320, InH: 320}

// yolov8 is a [1,4+C,N] tensor of the given candidates (cx, cy, w, h, scores…),
// padded with empty ones: a real model has many more candidates than attributes.
func yolov8(cands ...[]float32) Tensor {
	attrs := len(cands[0])
	for len(cands) <= attrs {
		cands = append(cands, make([]float32, attrs))
	}
	n := len(cands)
	t := Tensor{Name: "output0", Shape: []int64{1, int64(attrs), int64(n)}, Data: make([]float32, attrs*n)}
	for i, c := range cands {
		for k, v := range c {
			t.Data[k*n+i] = v
		}
	}
	return t
}

// The letterbox is undone: a box at input (100..140, 100..180) is image pixels
// (200..280, 40..200), normalised by 640×320, as [xMin, xMax, yMin, yMax].
func TestYOLOv8LetterboxMapping(t *testing.T) {
	d := Decoder{Format: FormatYOLOv8, Labels: []string{"scratch", "dent"}}
	p, err := d.Decode([]Tensor{yolov8(
		[]float32{120, 140, 40, 80, 0.1, 0.9}, // a dent
		[]float32{10, 10, 4, 4, 0.2, 0.1},     // under the threshold
	)}, letterboxed, model.Parameters{ConfidenceThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.BBoxes) != 1 || p.DisplayNames[0] != "dent" || p.IDs[0] != "1" || !near(p.Confidences[0], float64(float32(0.9))) {
		t.Fatalf("%+v", p)
	}
	want := [4]float64{200.0 / 640, 280.0 / 640, 40.0 / 320, 200.0 / 320}
	for i := range want {
		if !near(p.BBoxes[0][i], want[i]) {
			t.Fatalf("box %v, want %v", p.BBoxes[0], want)
		}
	}
	if err := p.Validate(true); err != nil {
		t.Fatal(err)
	}
}

// Non-maximum suppression is per class: two overlapping boxes of one class keep the
// better; a box of another class in the same place stays.
func TestNMSAcrossClasses(t *testing.T) {
	d := Decoder{Format: FormatYOLOv8}
	p, err := d.Decode([]Tensor{yolov8(
		[]float32{100, 100, 50, 50, 0.8, 0.0},
		[]float32{102, 101, 50, 50, 0.7, 0.0}, // same class, IoU ≈ 0.9: suppressed
		[]float32{101, 100, 50, 50, 0.0, 0.6}, // other class, same place: kept
		[]float32{250, 250, 50, 50, 0.9, 0.0}, // same class, elsewhere: kept
	)}, Frame{W: 320, H: 320, ScaleX: 1, ScaleY: 1, InW: 320, InH: 320}, model.Parameters{ConfidenceThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.IDs, ",")
	if got != "0,0,1" || !near(p.Confidences[0], float64(float32(0.9))) || !near(p.Confidences[2], float64(float32(0.6))) {
		t.Fatalf("kept %s %v", got, p.Confidences)
	}
}

// YOLOv5's [1,N,5+C]: the score is objectness × class score.
func TestYOLOv5(t *testing.T) {
	data := []float32{
		160, 160, 20, 20, 0.9, 0.2, 0.8, // 0.72, class 1
		50, 50, 10, 10, 0.4, 0.9, 0.1, // 0.36: below 0.5
	}
	data = append(data, make([]float32, 7*6)...) // six empty candidates
	p, err := Decoder{Format: FormatYOLOv5}.Decode([]Tensor{{Name: "output", Shape: []int64{1, 8, 7}, Data: data}},
		Frame{W: 320, H: 320, ScaleX: 1, ScaleY: 1, InW: 320, InH: 320}, model.Parameters{ConfidenceThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.IDs) != 1 || p.IDs[0] != "1" || math.Abs(p.Confidences[0]-0.72) > 1e-6 || !near(p.BBoxes[0][0], 150.0/320) {
		t.Fatalf("%+v", p)
	}
}

// SSD-style outputs: TF's normalised [yMin, xMin, yMax, xMax] and torchvision's
// [x1, y1, x2, y2] input pixels, both through a stretch (scale 0.5 × 0.25).
func TestSSD(t *testing.T) {
	f := Frame{W: 640, H: 1280, ScaleX: 0.5, ScaleY: 0.25, InW: 320, InH: 320}
	tf := []Tensor{
		{Name: "detection_boxes", Shape: []int64{1, 2, 4}, Data: []float32{0.25, 0.5, 0.75, 1, 0, 0, 0.1, 0.1}},
		{Name: "detection_scores", Shape: []int64{1, 2}, Data: []float32{0.9, 0.8}},
		{Name: "detection_classes", Shape: []int64{1, 2}, Data: []float32{3, 1}},
		{Name: "num_detections", Shape: []int64{1}, Data: []float32{1}}, // only the first counts
	}
	p, err := Decoder{Format: FormatSSD}.Decode(tf, f, model.Parameters{ConfidenceThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// x 0.5..1 of 320 = 160..320 input → 320..640 image → 0.5..1; y 80..240 input → 320..960 → 0.25..0.75.
	if len(p.IDs) != 1 || p.IDs[0] != "3" || p.BBoxes[0] != [4]float64{0.5, 1, 0.25, 0.75} {
		t.Fatalf("TF: %+v", p)
	}
	tv := []Tensor{
		{Name: "boxes", Shape: []int64{1, 4}, Data: []float32{160, 80, 320, 240}},
		{Name: "scores", Shape: []int64{1}, Data: []float32{0.7}},
		{Name: "labels", Shape: []int64{1}, Data: []float32{2}},
	}
	p, err = Decoder{Format: FormatSSD}.Decode(tv, f, model.Parameters{ConfidenceThreshold: 0.5})
	if err != nil || len(p.IDs) != 1 || p.IDs[0] != "2" || p.BBoxes[0] != [4]float64{0.5, 1, 0.25, 0.75} {
		t.Fatalf("torchvision: %+v %v", p, err)
	}
}

// Logits get a softmax; probabilities stay as they are; top first, capped.
func TestClassification(t *testing.T) {
	d := Decoder{Format: FormatClassification, Labels: []string{"ok", "defect", "dust"}}
	p, err := d.Decode([]Tensor{{Name: "logits", Shape: []int64{1, 3}, Data: []float32{1, 3, 0}}}, Frame{}, model.Parameters{MaxPredictions: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := []float64{math.E, math.Exp(3), 1}
	sum := e[0] + e[1] + e[2]
	if strings.Join(p.DisplayNames, ",") != "defect,ok" || math.Abs(p.Confidences[0]-e[1]/sum) > 1e-6 || math.Abs(p.Confidences[1]-e[0]/sum) > 1e-6 {
		t.Fatalf("logits: %+v", p)
	}
	p, err = d.Decode([]Tensor{{Name: "probs", Shape: []int64{3}, Data: []float32{0.2, 0.3, 0.5}}}, Frame{}, model.Parameters{ConfidenceThreshold: 0.25})
	if err != nil || strings.Join(p.DisplayNames, ",") != "dust,defect" || !near(p.Confidences[0], float64(float32(0.5))) {
		t.Fatalf("probabilities: %+v %v", p, err)
	}
}

// Outputs that fit the format set are refused with what they look like and which
// formats there are: a YOLOv8 tensor read as v5, a detector read as a classifier.
func TestMismatchedLayoutRefused(t *testing.T) {
	v8 := yolov8([]float32{1, 2, 3, 4, 0.5, 0.5})
	for _, format := range []string{FormatYOLOv5, FormatClassification, FormatSSD} {
		_, err := Decoder{Format: format}.Decode([]Tensor{v8}, letterboxed, model.Parameters{})
		if err == nil || !strings.Contains(err.Error(), "output0[1,6,7]") || !strings.Contains(err.Error(), "onnx.format") {
			t.Errorf("%s on a [1,6,7] output: %v", format, err)
		}
	}
}

// The format is guessed from the outputs' shapes and names, or not at all.
func TestGuess(t *testing.T) {
	for _, c := range []struct {
		outs []IO
		task string
		want string
	}{
		{[]IO{{Name: "output0", Shape: []int64{1, 84, 8400}}}, "", FormatYOLOv8},
		{[]IO{{Name: "output0", Shape: []int64{1, 25200, 85}}}, "", FormatYOLOv5},
		{[]IO{{Name: "logits", Shape: []int64{1, 1000}}}, "", FormatClassification},
		{[]IO{{Name: "boxes", Shape: []int64{-1, 4}}, {Name: "scores", Shape: []int64{-1}}, {Name: "labels", Shape: []int64{-1}}}, "", FormatSSD},
		{[]IO{{Name: "a", Shape: []int64{1, 2, 3, 4}}}, "", ""},
	} {
		if got, why := guess(Info{Outputs: c.outs, Task: c.task}); got != c.want {
			t.Errorf("%v: %q (%s), want %q", c.outs, got, why, c.want)
		}
	}
}

// Ultralytics' metadata: names as a Python dict, imgsz as a list.
func TestUltralyticsMetadata(t *testing.T) {
	if got := names(`{0: 'person', 1: 'bicycle', 3: "it's"}`); strings.Join(got, "|") != "person|bicycle||it's" {
		t.Errorf("names: %q", got)
	}
	if h, w, ok := imgsz("[480, 640]"); !ok || h != 480 || w != 640 {
		t.Errorf("imgsz: %d %d %v", h, w, ok)
	}
}

// The bilinear resize is PyTorch's (align_corners=False): halving averages 2×2 blocks;
// doubling interpolates between pixel centres and holds the edges.
func TestResizeIsPyTorchsBilinear(t *testing.T) {
	src := []uint8{0, 0, 0, 100, 100, 100, 200, 200, 200, 50, 50, 50} // 2×2
	if got := resize(src, 2, 2, 1, 1); got[0] != 87.5 {
		t.Errorf("2×2 → 1×1: %v, want the mean 87.5", got[0])
	}
	row := []uint8{0, 0, 0, 100, 100, 100} // 2×1
	got := resize(row, 2, 1, 4, 1)
	want := []float64{0, 25, 75, 100}
	for i, w := range want {
		if got[i*3] != w {
			t.Fatalf("2 → 4: %v, want %v", got, want)
		}
	}
}
