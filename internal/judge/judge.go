// Package judge asks an independent face detector — OpenCV's cascades, through
// scripts/judge_anonymization.py and Debian's python3-opencv — whether anonymized
// boxes still hold a face, and how much structure is left in them (SSIM at face
// scale). Tests of anonymization use it; visionstack itself never does.
package judge

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Python is Debian's interpreter, where python3-opencv installs cv2.
const Python = "/usr/bin/python3"

// MaxSSIM bounds the face-scale SSIM left in any box: "well below 0.5". Smooth
// replacements of similar tone score about 0.35 against any face (the luminance
// term), so this is about as low as a tone-keeping method can go.
const MaxSSIM = 0.4

// Item is one processed image, its reference (the original at the processed size)
// and the anonymized boxes [x, y, w, h] in pixels.
type Item struct {
	Processed string   `json:"processed"`
	Reference string   `json:"reference"`
	Boxes     [][4]int `json:"boxes"`
}

// Box is the verdict on one box.
type Box struct {
	Box              [4]int  `json:"box"`
	FacesInProcessed int     `json:"facesInProcessed"`
	FacesInReference int     `json:"facesInReference"`
	SSIM             float64 `json:"ssim"`
}

// Out is the verdict on every item.
type Out struct {
	OpenCV  string `json:"opencv"`
	Results []struct {
		Processed string `json:"processed"`
		Boxes     []Box  `json:"boxes"`
	} `json:"results"`
}

// Require fails the test when the judge cannot run: it is a test dependency that
// scripts/install-deps.sh installs, never a reason to skip.
func Require(t testing.TB) {
	t.Helper()
	if out, err := exec.Command(Python, "-c", "import cv2").CombinedOutput(); err != nil {
		t.Fatalf("the OpenCV judge needs Debian's python3-opencv and opencv-data (run scripts/install-deps.sh): %v\n%s", err, out)
	}
}

// Run judges items.
func Run(t testing.TB, items []Item) Out {
	t.Helper()
	Require(t)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "judge_anonymization.py")
	in, _ := json.Marshal(map[string]any{"items": items})
	cmd := exec.Command(Python, script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("judge: %v\n%s", err, stderr.String())
	}
	var out Out
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("judge output: %v\n%s", err, raw)
	}
	return out
}
