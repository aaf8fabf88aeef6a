package transform_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/transform"
	"github.com/visionstack/visionstack/testdata/photos"
)

var only = flag.String("methods", "", "comma-separated anonymization methods to judge (default: all)")

// maxSSIM bounds the face-scale SSIM left in any box by the default method: "well
// below 0.5". Smooth replacements of similar tone score about 0.35 against any face
// (the luminance term), so this is about as low as a tone-keeping method can go.
const maxSSIM = 0.4

// judgePython is Debian's interpreter, where python3-opencv installs cv2.
const judgePython = "/usr/bin/python3"

type judgeItem struct {
	Processed string   `json:"processed"`
	Reference string   `json:"reference"`
	Boxes     [][4]int `json:"boxes"`
}

type judgeOut struct {
	OpenCV  string `json:"opencv"`
	Results []struct {
		Processed string `json:"processed"`
		Boxes     []struct {
			Box              [4]int  `json:"box"`
			FacesInProcessed int     `json:"facesInProcessed"`
			FacesInReference int     `json:"facesInReference"`
			SSIM             float64 `json:"ssim"`
		} `json:"boxes"`
	} `json:"results"`
}

func newTransformer(method string) *transform.Transformer {
	pad := 0.15
	return transform.New([]config.Transform{
		{Blur: &config.Blur{Analysis: "faces", Padding: &pad, Method: method}},
		{StripMetadata: &config.StripMetadata{}},
		{Downscale: &config.Downscale{LongSide: 2048, Quality: 85}},
	}, true)
}

// TestAnonymizationJudgedByOpenCV anonymizes the hand-boxed faces of the sample
// photos with each method and asks OpenCV's cascades — a detector visionstack does
// not use — whether any face is left in a box, and how much structure is left (SSIM).
// The default method must leave no face and SSIM well below 0.5 in every box.
func TestAnonymizationJudgedByOpenCV(t *testing.T) {
	if out, err := exec.Command(judgePython, "-c", "import cv2").CombinedOutput(); err != nil {
		t.Fatalf("the OpenCV judge needs Debian's python3-opencv and opencv-data (run scripts/install-deps.sh): %v\n%s", err, out)
	}
	truth, err := photos.FaceTruth()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	methods := []string{imaging.MethodPixelate, imaging.MethodGaussian, imaging.MethodFill}
	if *only != "" {
		methods = strings.Split(*only, ",")
	}
	for _, method := range methods {
		var items []judgeItem
		tr := newTransformer(method)
		for _, tc := range truth {
			data, err := os.ReadFile(tc.File)
			if err != nil {
				t.Fatal(err)
			}
			fit, err := imaging.Thumbnail(data, 1024, imaging.CropNone, true) // the truth's frame
			if err != nil {
				t.Fatal(err)
			}
			fw, fh := float64(fit.Width()), float64(fit.Height())
			fit.Close()
			res := meta.Result{Analysis: "faces"}
			for _, b := range tc.Boxes {
				res.Detections = append(res.Detections, meta.Detection{Label: "face", Confidence: 1,
					Box: &meta.Box{XMin: b[0] / fw, XMax: (b[0] + b[2]) / fw, YMin: b[1] / fh, YMax: (b[1] + b[3]) / fh}})
			}
			out, err := tr.Apply(data, []meta.Result{res})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := imaging.Editable(data, max(out.Width, out.Height), true)
			if err != nil {
				t.Fatal(err)
			}
			refJPEG, err := ref.JPEG(95, true)
			ref.Close()
			if err != nil {
				t.Fatal(err)
			}
			base := fmt.Sprintf("%s-%s", method, filepath.Base(tc.File))
			item := judgeItem{Processed: filepath.Join(dir, base+".processed.jpg"), Reference: filepath.Join(dir, base+".reference.jpg")}
			if err := os.WriteFile(item.Processed, out.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(item.Reference, refJPEG, 0o644); err != nil {
				t.Fatal(err)
			}
			sx, sy := float64(out.Width)/fw, float64(out.Height)/fh
			for _, b := range tc.Boxes {
				item.Boxes = append(item.Boxes, [4]int{int(b[0] * sx), int(b[1] * sy), int(b[2] * sx), int(b[3] * sy)})
			}
			items = append(items, item)
		}
		got := judge(t, items)
		boxes, leftInProcessed, seenInReference, worstSSIM, sumSSIM := 0, 0, 0, 0.0, 0.0
		for _, r := range got.Results {
			for _, b := range r.Boxes {
				boxes++
				if b.FacesInProcessed > 0 {
					leftInProcessed++
					t.Logf("%s: face still detectable in box %v of %s", method, b.Box, filepath.Base(r.Processed))
				}
				if b.FacesInReference > 0 {
					seenInReference++
				}
				worstSSIM = max(worstSSIM, b.SSIM)
				sumSSIM += b.SSIM
				if b.SSIM >= maxSSIM {
					t.Logf("%s: SSIM %.3f in box %v of %s", method, b.SSIM, b.Box, filepath.Base(r.Processed))
				}
			}
		}
		t.Logf("%-8s OpenCV %s: %d boxes; judge sees a face in %d originals and in %d anonymized; SSIM mean %.3f, worst %.3f",
			method, got.OpenCV, boxes, seenInReference, leftInProcessed, sumSSIM/float64(boxes), worstSSIM)
		if seenInReference < boxes/2 {
			t.Fatalf("the judge found faces in only %d of %d original boxes: it cannot judge", seenInReference, boxes)
		}
		if method == config.DefaultBlurMethod {
			if leftInProcessed > 0 {
				t.Errorf("default method %s leaves %d detectable faces", method, leftInProcessed)
			}
			if worstSSIM >= maxSSIM {
				t.Errorf("default method %s leaves structure: worst SSIM %.3f (want < %.2f)", method, worstSSIM, maxSSIM)
			}
		}
	}
}

func judge(t *testing.T, items []judgeItem) judgeOut {
	t.Helper()
	in, _ := json.Marshal(map[string]any{"items": items})
	cmd := exec.Command(judgePython, "../../scripts/judge_anonymization.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("judge: %v\n%s", err, stderr.String())
	}
	var out judgeOut
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("judge output: %v\n%s", err, raw)
	}
	return out
}
