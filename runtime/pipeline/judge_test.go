package pipeline_test

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/draw"

	"github.com/visionstack/visionstack/internal/judge"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/transform"
	"github.com/visionstack/visionstack/testdata/photos"
)

// judgedJob is one processed job for the judge: its original and what came out.
type judgedJob struct {
	name      string
	original  []byte
	job       meta.Job
	processed []byte
}

// judgeJobs asks OpenCV's cascades about every box the jobs anonymized (the model's
// own boxes, padded as the demo project pads them): no face may be left in any, and
// no face structure (SSIM at face scale). Half the original boxes at least must hold
// a face the judge sees, or it cannot judge.
func judgeJobs(t *testing.T, jobs []judgedJob) {
	t.Helper()
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	tr := transform.New(cfg.Pipeline.Transforms, true)
	dir := t.TempDir()
	if d := os.Getenv("VISIONSTACK_KEEP"); d != "" {
		dir = d
	}
	var items []judge.Item
	for i, j := range jobs {
		ref, _, err := imaging.Limits{}.Decode(j.original, tr.LongSide(), true)
		if err != nil {
			t.Fatal(err)
		}
		refJPEG, err := ref.JPEG(95, true)
		w, h := ref.Width(), ref.Height()
		ref.Close()
		if err != nil {
			t.Fatal(err)
		}
		item := judge.Item{Processed: filepath.Join(dir, fmt.Sprintf("job%d.processed.jpg", i)),
			Reference: filepath.Join(dir, fmt.Sprintf("job%d.reference.jpg", i))}
		for _, f := range []struct {
			path string
			data []byte
		}{{item.Processed, j.processed}, {item.Reference, refJPEG}} {
			if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range tr.Regions(j.job.Results, w, h) {
			item.Boxes = append(item.Boxes, [4]int{r.X, r.Y, r.W, r.H})
		}
		items = append(items, item)
	}
	got := judge.Run(t, items)
	allSeen, all, worstSSIM := 0, 0, 0.0
	for i, r := range got.Results {
		seen, left := 0, 0
		for _, b := range r.Boxes {
			if b.FacesInReference > 0 {
				seen++
			}
			if b.FacesInProcessed > 0 {
				left++
				t.Errorf("%s: OpenCV still finds a face in box %v", jobs[i].name, b.Box)
			}
			worstSSIM = max(worstSSIM, b.SSIM)
			if b.SSIM >= judge.MaxSSIM {
				t.Errorf("%s: SSIM %.3f left in box %v", jobs[i].name, b.SSIM, b.Box)
			}
		}
		t.Logf("%s: OpenCV %s sees a face in %d of %d original boxes and in %d anonymized", jobs[i].name, got.OpenCV, seen, len(r.Boxes), left)
		allSeen, all = allSeen+seen, all+len(r.Boxes)
	}
	t.Logf("%d boxes, %d of them holding a face the judge sees; worst SSIM %.3f", all, allSeen, worstSSIM)
	if allSeen < all/2 {
		t.Errorf("the judge sees only %d faces in %d original boxes: it cannot judge", allSeen, all)
	}
}

// TestSamplesJudgedByOpenCV runs the demo project's whole job (the built-in model's
// boxes, padding, the re-check) on every sample photo with faces, group photos
// included, as it is, mirrored and at 70% (other boxes, other mosaics), and asks
// OpenCV's cascades about every anonymized box: the mosaic must not read as a face
// to a cascade detector visionstack does not use. OpenCV's profile cascade read 2 of
// the 27 shuffled mosaics of the photos as they are as a face turned sideways.
func TestSamplesJudgedByOpenCV(t *testing.T) {
	judge.Require(t)
	truth, err := photos.FaceTruth()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	env := openLocal(t, cfg)
	var jobs []judgedJob
	for _, tc := range truth {
		data, err := os.ReadFile(tc.File)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range variants(t, data) {
			name := v.name + "-" + filepath.Base(tc.File)
			job, err := processOne(env, name, v.data)
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, judgedJob{name: name, original: v.data, job: job, processed: readOutput(t, env, job)})
		}
	}
	judgeJobs(t, jobs)
}

type variant struct {
	name string
	data []byte
}

// variants are data as it is, mirrored, and scaled to 70% (PNG, lossless).
func variants(t *testing.T, data []byte) []variant {
	t.Helper()
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	mirrored := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			mirrored.Set(b.Dx()-1-x, y, src.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	small := image.NewRGBA(image.Rect(0, 0, b.Dx()*7/10, b.Dy()*7/10))
	draw.CatmullRom.Scale(small, small.Bounds(), src, b, draw.Src, nil)
	out := []variant{{"as-is", data}}
	for _, v := range []struct {
		name string
		im   image.Image
	}{{"mirrored", mirrored}, {"scaled", small}} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, v.im); err != nil {
			t.Fatal(err)
		}
		out = append(out, variant{v.name, buf.Bytes()})
	}
	return out
}
