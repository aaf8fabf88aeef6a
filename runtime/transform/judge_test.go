package transform_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/internal/judge"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/transform"
	"github.com/visionstack/visionstack/testdata/photos"
)

var only = flag.String("methods", "", "comma-separated anonymization methods to judge (default: all)")

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
	judge.Require(t)
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
		var items []judge.Item
		tr := newTransformer(method)
		for _, tc := range truth {
			data, err := os.ReadFile(tc.File)
			if err != nil {
				t.Fatal(err)
			}
			fit, _, err := imaging.Limits{}.Thumbnail(data, 1024, imaging.CropNone, true) // the truth's frame
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
			dec, _, err := imaging.Limits{}.Decode(data, tr.LongSide(), true)
			if err != nil {
				t.Fatal(err)
			}
			out, err := tr.Apply(dec, []meta.Result{res})
			if err != nil {
				t.Fatal(err)
			}
			refJPEG, err := dec.JPEG(95, true) // Apply leaves the decoded original as it was
			dec.Close()
			if err != nil {
				t.Fatal(err)
			}
			base := fmt.Sprintf("%s-%s", method, filepath.Base(tc.File))
			item := judge.Item{Processed: filepath.Join(dir, base+".processed.jpg"), Reference: filepath.Join(dir, base+".reference.jpg")}
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
		got := judge.Run(t, items)
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
				if b.SSIM >= judge.MaxSSIM {
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
			if worstSSIM >= judge.MaxSSIM {
				t.Errorf("default method %s leaves structure: worst SSIM %.3f (want < %.2f)", method, worstSSIM, judge.MaxSSIM)
			}
		}
	}
}
