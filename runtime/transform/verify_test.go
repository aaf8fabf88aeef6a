package transform_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/internal/judge"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/transform"
	"github.com/visionstack/visionstack/testdata/photos"
)

// scripted is a verifier that answers from a script, one answer per round.
type scripted struct {
	rounds [][]meta.Box
	calls  int
}

func (s *scripted) Faces(*imaging.Image, []meta.Box) ([]meta.Detection, error) {
	s.calls++
	if s.calls > len(s.rounds) {
		return nil, nil
	}
	var out []meta.Detection
	for _, b := range s.rounds[s.calls-1] {
		out = append(out, meta.Detection{Label: "face", Confidence: 0.9, Box: &b})
	}
	return out, nil
}

// grown is b scaled by f about its centre, as the only detection of a round.
func grown(b meta.Box, f float64) []meta.Box {
	cx, cy, hw, hh := (b.XMin+b.XMax)/2, (b.YMin+b.YMax)/2, (b.XMax-b.XMin)*f/2, (b.YMax-b.YMin)*f/2
	return []meta.Box{{XMin: max(cx-hw, 0), XMax: min(cx+hw, 1), YMin: max(cy-hh, 0), YMax: min(cy+hh, 1)}}
}

func decodeGrace(t *testing.T, tr *transform.Transformer) *imaging.Image {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	dec, _, err := imaging.Limits{}.Decode(data, tr.LongSide(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dec.Close)
	return dec
}

// The re-check's rounds: a face outside every region is anonymized, one still seen
// inside a region is filled, a detection on a filled box is the box's edge; a face
// that keeps appearing fails closed, permanently, so the image is quarantined.
func TestRecheckRounds(t *testing.T) {
	face := meta.Box{XMin: 0.3, XMax: 0.6, YMin: 0.2, YMax: 0.5}
	other := meta.Box{XMin: 0.05, XMax: 0.15, YMin: 0.05, YMax: 0.15}
	analysed := []meta.Result{{Analysis: "faces", Detections: []meta.Detection{{Label: "face", Confidence: 0.9, Box: &face}}}}
	for _, c := range []struct {
		name      string
		rounds    [][]meta.Box
		rechecked int
		filled    int
		remained  bool
	}{
		{"clean at once", nil, 0, 0, false},
		{"a missed face, then clean", [][]meta.Box{{other}}, 1, 0, false},
		{"a face still visible in its region is filled, then its edge is ignored", [][]meta.Box{{face}, {face}}, 1, 1, false},
		// BlazeFace reads a pixelated box's blob as a face at ever larger scales: that is
		// the region again (filled), not a new face to unite with it round after round.
		{"a region's blob seen larger and larger is that region, filled once", [][]meta.Box{
			grown(face, 1.6), grown(face, 2.2), grown(face, 2.8), grown(face, 3.4)}, 1, 1, false},
		{"faces that keep coming fail closed", [][]meta.Box{{other}, {{XMin: 0.7, XMax: 0.8, YMin: 0.7, YMax: 0.8}},
			{{XMin: 0.8, XMax: 0.9, YMin: 0.1, YMax: 0.2}}, {{XMin: 0.1, XMax: 0.2, YMin: 0.8, YMax: 0.9}}}, 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTransformer(imaging.MethodPixelate)
			v := &scripted{rounds: c.rounds}
			tr.SetVerifier(v)
			out, err := tr.Apply(decodeGrace(t, tr), analysed)
			if c.remained {
				if !errors.Is(err, transform.ErrFaceRemained) || !fault.IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent ErrFaceRemained", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !out.Verified || out.Rechecked != c.rechecked || out.Filled != c.filled || out.Regions != 1+c.rechecked {
				t.Fatalf("verified %v, rechecked %d (filled %d), regions %d; want rechecked %d (filled %d)",
					out.Verified, out.Rechecked, out.Filled, out.Regions, c.rechecked, c.filled)
			}
		})
	}
}

// An analysis that missed a face (here: found nothing at all) no longer publishes it:
// the re-check finds it and anonymizes it, and OpenCV sees no face there afterwards.
func TestRecheckAnonymizesAFaceTheAnalysisMissed(t *testing.T) {
	judge.Require(t)
	truth, err := photos.FaceTruth()
	if err != nil {
		t.Fatal(err)
	}
	var grace photos.Truth
	for _, tc := range truth {
		if filepath.Base(tc.File) == "grace_hopper.jpg" {
			grace = tc
		}
	}
	v, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransformer(imaging.MethodPixelate)
	tr.SetVerifier(v)
	dec := decodeGrace(t, tr)
	out, err := tr.Apply(dec, []meta.Result{{Analysis: "faces", Detections: []meta.Detection{}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Rechecked < 1 {
		t.Fatalf("the re-check found %d faces in a photo with one face the analysis missed", out.Rechecked)
	}
	dir := t.TempDir()
	ref, err := dec.JPEG(95, true)
	if err != nil {
		t.Fatal(err)
	}
	item := judge.Item{Processed: filepath.Join(dir, "p.jpg"), Reference: filepath.Join(dir, "r.jpg")}
	if err := os.WriteFile(item.Processed, out.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(item.Reference, ref, 0o644); err != nil {
		t.Fatal(err)
	}
	fit, _, err := imaging.Limits{}.Thumbnail(mustRead(t, grace.File), 1024, imaging.CropNone, true)
	if err != nil {
		t.Fatal(err)
	}
	sx, sy := float64(out.Width)/float64(fit.Width()), float64(out.Height)/float64(fit.Height())
	fit.Close()
	for _, b := range grace.Boxes {
		item.Boxes = append(item.Boxes, [4]int{int(b[0] * sx), int(b[1] * sy), int(b[2] * sx), int(b[3] * sy)})
	}
	res := judge.Run(t, []judge.Item{item})
	for _, r := range res.Results {
		for _, b := range r.Boxes {
			if b.FacesInReference == 0 {
				t.Fatalf("the judge sees no face in the original box %v: the test photo changed?", b.Box)
			}
			if b.FacesInProcessed > 0 {
				t.Errorf("face still detectable in %v after the re-check", b.Box)
			}
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", p, err))
	}
	return b
}

// versioned is scripted, and the detector of analyses of its version: the re-check
// may reuse their candidates. It records what each round asked to look at.
type versioned struct {
	scripted
	version string
	asked   [][]meta.Box
}

func (v *versioned) Faces(img *imaging.Image, within []meta.Box) ([]meta.Detection, error) {
	v.asked = append(v.asked, within)
	return v.scripted.Faces(img, within)
}

func (v *versioned) Version() string { return v.version }

// With the analysis' candidates from the verifier's own detector, the first round
// scans nothing outside the anonymized regions: a candidate there is anonymized as
// it stands (its pixels are unchanged), one over a region is left to the look
// around that region; later rounds look around what they changed. From another
// detector (or none) the first round scans the whole image, as before.
func TestRecheckReusesCandidates(t *testing.T) {
	face := meta.Box{XMin: 0.3, XMax: 0.6, YMin: 0.2, YMax: 0.5}
	missed := meta.Box{XMin: 0.05, XMax: 0.15, YMin: 0.05, YMax: 0.15}
	overRegion := meta.Box{XMin: 0.32, XMax: 0.58, YMin: 0.22, YMax: 0.48}
	analysed := func(version string) []meta.Result {
		return []meta.Result{{Analysis: "faces", ModelVersion: version,
			Detections: []meta.Detection{{Label: "face", Confidence: 0.9, Box: &face}},
			Candidates: []meta.Detection{{Label: "face", Confidence: 0.4, Box: &missed}, {Label: "face", Confidence: 0.45, Box: &overRegion}}}}
	}
	t.Run("same detector", func(t *testing.T) {
		tr := newTransformer(imaging.MethodPixelate)
		v := &versioned{version: "v1"}
		tr.SetVerifier(v)
		out, err := tr.Apply(decodeGrace(t, tr), analysed("v1"))
		if err != nil {
			t.Fatal(err)
		}
		if out.Rechecked != 1 || out.Filled != 0 {
			t.Errorf("rechecked %d (filled %d), want the one candidate outside the region anonymized", out.Rechecked, out.Filled)
		}
		if len(v.asked) != 2 || len(v.asked[0]) != 1 || len(v.asked[1]) != 1 {
			t.Fatalf("rounds looked at %v, want around the analysis' region, then around the candidate's", v.asked)
		}
		if a := v.asked[0][0]; !(a.XMin <= face.XMin && a.XMax >= face.XMax && a.YMin <= face.YMin && a.YMax >= face.YMax) {
			t.Errorf("the first round looked around %+v, not the face's region", a)
		}
		if a := v.asked[1][0]; !(a.XMin <= missed.XMin && a.XMax >= missed.XMax) || a.XMax > face.XMin {
			t.Errorf("the second round looked around %+v, not the candidate's region", a)
		}
	})
	t.Run("another detector", func(t *testing.T) {
		tr := newTransformer(imaging.MethodPixelate)
		v := &versioned{version: "v2"}
		tr.SetVerifier(v)
		out, err := tr.Apply(decodeGrace(t, tr), analysed("v1"))
		if err != nil {
			t.Fatal(err)
		}
		if out.Rechecked != 0 || len(v.asked) != 1 || v.asked[0] != nil {
			t.Errorf("rechecked %d, rounds looked at %v; want one full scan that finds nothing", out.Rechecked, v.asked)
		}
	})
}
