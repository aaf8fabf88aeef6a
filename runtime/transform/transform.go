// Package transform is the third step: anonymize the boxes chosen analyses found,
// strip metadata, and downscale and encode the processed image.
//
// Boxes are normalised, so the order of the configured transforms does not change
// the result: Transform starts from the pixels Prepare decoded (once, shrinking on
// load to the output size), anonymizes every region there, and one encode writes it.
package transform

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
)

// Transformer runs the step with one project's settings.
type Transformer struct {
	blurs      []config.Blur
	strip      bool
	longSide   int // 0: keep the original size
	quality    int
	autoOrient bool
	verifier   Verifier
}

// Verifier looks for faces in an anonymized image: a second opinion, so a face the
// analysis missed is not published. within, when not nil, limits the search to those
// normalised areas and their surroundings (what the last round changed).
type Verifier interface {
	Faces(img *imaging.Image, within []meta.Box) ([]meta.Detection, error)
}

// CandidateVerifier is a Verifier that is also the detector some analyses ran: an
// analysis result of its Version with candidates (meta.Result.Candidates) says what
// it saw on the original pixels, down to the re-check's threshold. Outside the
// anonymized regions those pixels have not changed, so the first round reuses that
// instead of scanning the image again, and looks only around the regions.
type CandidateVerifier interface {
	Verifier
	Version() string
}

// RecheckInside is the confidence a re-check detection needs inside an anonymized
// region to count: the analyses' usual threshold (the built-in verifier drops readings
// below it inside a region before its second look). The re-check's own lower one is
// for faces the analysis missed; inside a region it would read faces into the blocks.
const RecheckInside = 0.5

// ErrFaceRemained: a face was still found after every re-anonymization round. The
// image is quarantined: failing closed, an unblurred face is never published.
var ErrFaceRemained = errors.New("face remained after anonymization")

// maxRechecks bounds the verification rounds.
const maxRechecks = 3

// Output is the processed image.
type Output struct {
	Data      []byte
	Width     int
	Height    int
	Regions   int // anonymized, the re-check's included
	Rechecked int // regions the verification anonymized: faces the analysis missed, and Filled
	Filled    int // of those, faces still seen inside an anonymized region, filled solid
	Verified  bool
}

// New builds a Transformer from the project's transforms (defaults applied).
func New(ts []config.Transform, autoOrient bool) *Transformer {
	t := &Transformer{quality: config.DefaultOutQuality, autoOrient: autoOrient}
	for _, tr := range ts {
		switch {
		case tr.Blur != nil:
			t.blurs = append(t.blurs, *tr.Blur)
		case tr.StripMetadata != nil:
			t.strip = true
		case tr.Downscale != nil:
			t.longSide, t.quality = tr.Downscale.LongSide, tr.Downscale.Quality
		}
	}
	return t
}

// NeedsVerifier reports whether a blur asks for the verification pass.
func (t *Transformer) NeedsVerifier() bool {
	for _, b := range t.blurs {
		if b.Verify == nil || *b.Verify {
			return true
		}
	}
	return false
}

// SetVerifier sets the detector of the verification pass.
func (t *Transformer) SetVerifier(v Verifier) { t.verifier = v }

// Regions returns the pixel rectangles to anonymize in a w×h image.
func (t *Transformer) Regions(results []meta.Result, w, h int) []imaging.Rect {
	var out []imaging.Rect
	for _, b := range t.blurs {
		out = append(out, regions(b, results, w, h)...)
	}
	return out
}

func regions(b config.Blur, results []meta.Result, w, h int) []imaging.Rect {
	var out []imaging.Rect
	for _, r := range results {
		if r.Analysis != b.Analysis {
			continue
		}
		for _, d := range r.Detections {
			if d.Box == nil || (len(b.Labels) > 0 && !slices.Contains(b.Labels, d.Label)) {
				continue
			}
			out = append(out, padded(*d.Box, *b.Padding, w, h))
		}
	}
	return out
}

// padded grows a normalised box by pad of its size on each side, in pixels, rounding
// outwards so that no edge pixel of the face is left.
func padded(b meta.Box, pad float64, w, h int) imaging.Rect {
	bw, bh := b.XMax-b.XMin, b.YMax-b.YMin
	x0 := math.Floor((b.XMin - pad*bw) * float64(w))
	x1 := math.Ceil((b.XMax + pad*bw) * float64(w))
	y0 := math.Floor((b.YMin - pad*bh) * float64(h))
	y1 := math.Ceil((b.YMax + pad*bh) * float64(h))
	return imaging.Rect{X: int(x0), Y: int(y0), W: int(x1 - x0), H: int(y1 - y0)}
}

// LongSide is the long side of the pixels Apply needs (imaging.MaxSide: full size):
// Prepare decodes at least this much.
func (t *Transformer) LongSide() int {
	if t.longSide == 0 {
		return imaging.MaxSide
	}
	return t.longSide
}

// Apply produces the processed image from the decoded original (unchanged) and the
// analysis results. It works on pixels already in memory: a failure here is not the
// image's fault, so it is never permanent.
func (t *Transformer) Apply(decoded *imaging.Image, results []meta.Result) (Output, error) {
	img, err := decoded.Fit(t.LongSide(), imaging.CropNone)
	if err != nil {
		return Output{}, fmt.Errorf("transform: %w", err)
	}
	defer img.Close()
	var done []imaging.Rect
	for _, b := range t.blurs { // each blur with its own method
		rects := regions(b, results, img.Width(), img.Height())
		if err := img.Anonymize(rects, b.Method); err != nil {
			return Output{}, fmt.Errorf("transform: %w", err)
		}
		done = append(done, rects...)
	}
	out := Output{Regions: len(done)}
	if b, ok := t.verifying(); ok {
		n, filled, err := t.verify(img, b, done, t.candidates(b, results))
		if err != nil {
			return Output{}, err
		}
		out.Rechecked, out.Filled, out.Regions, out.Verified = n, filled, out.Regions+n, true
	}
	data, err := img.JPEG(t.quality, t.strip)
	if err != nil {
		return Output{}, fmt.Errorf("transform: %w", err)
	}
	out.Data, out.Width, out.Height = data, img.Width(), img.Height()
	return out, nil
}

// verifying returns the blur whose settings the verification pass uses.
func (t *Transformer) verifying() (config.Blur, bool) {
	if t.verifier == nil {
		return config.Blur{}, false
	}
	for _, b := range t.blurs {
		if b.Verify == nil || *b.Verify {
			return b, true
		}
	}
	return config.Blur{}, false
}

// candidates are what the verifying blur's analysis saw below its threshold, when
// the verifier is that analysis' detector (CandidateVerifier); nil otherwise.
func (t *Transformer) candidates(b config.Blur, results []meta.Result) []meta.Detection {
	cv, ok := t.verifier.(CandidateVerifier)
	if !ok {
		return nil
	}
	for _, r := range results {
		if r.Analysis == b.Analysis && r.Candidates != nil && r.ModelVersion == cv.Version() {
			return r.Candidates
		}
	}
	return nil
}

// verify looks for faces in the anonymized image and anonymizes each it finds: one
// outside every region with the blur's method; one still seen inside a region by
// filling that whole region solid (no detector reads a face in it, and the fill ends
// where the region does), until a round finds nothing. A detection mostly inside a
// filled region is the detector reading its edge, not a face. It returns how many
// regions it anonymized again or anew and how many of those it filled, or
// ErrFaceRemained.
//
// With candidates (not nil), the first round is those of them that lie outside
// every region (their pixels are unchanged: a scan would see them again) and a look
// around each region (whose pixels changed); without, it scans the whole image.
func (t *Transformer) verify(img *imaging.Image, b config.Blur, done []imaging.Rect, candidates []meta.Detection) (int, int, error) {
	var filled []imaging.Rect
	var changed []meta.Box // nil: the first round looks everywhere
	var seen []meta.Detection
	if candidates != nil {
		changed = []meta.Box{}
		for _, r := range done {
			changed = append(changed, normalised(r, img.Width(), img.Height()))
		}
		for _, d := range candidates {
			if d.Box != nil && (len(b.Labels) == 0 || slices.Contains(b.Labels, d.Label)) &&
				!slices.ContainsFunc(done, func(r imaging.Rect) bool { return padded(*d.Box, *b.Padding, img.Width(), img.Height()).Shared(r) > 0 }) {
				seen = append(seen, d)
			}
		}
	}
	added := 0
	for round := 0; ; round++ {
		dets := seen
		seen = nil
		if changed == nil || len(changed) > 0 {
			found, err := t.verifier.Faces(img, changed)
			if err != nil {
				return 0, 0, fmt.Errorf("transform: verify: %w", err)
			}
			dets = append(dets, found...)
		}
		var fresh, again []imaging.Rect
		for _, d := range dets {
			if d.Box == nil {
				continue
			}
			r := padded(*d.Box, *b.Padding, img.Width(), img.Height())
			if _, ok := sameRegion(r, filled); ok {
				continue
			}
			if region, ok := sameRegion(r, done); ok {
				if d.Confidence >= RecheckInside && !slices.Contains(again, region) {
					again = append(again, region)
				}
				continue
			}
			// Overlapping a region in part: the same face seen a little off. One region
			// over both, anonymized in one piece (two block grids would leave edges).
			if i := overlapping(r, done); i >= 0 {
				r = r.Union(done[i])
				done = slices.Delete(done, i, i+1)
			}
			fresh = append(fresh, r)
		}
		if len(fresh)+len(again) == 0 {
			return added, len(filled), nil
		}
		if round == maxRechecks {
			return 0, 0, fault.Permanent(fmt.Errorf("%w: %d found after %d rounds", ErrFaceRemained, len(fresh)+len(again), maxRechecks))
		}
		if err := img.Anonymize(fresh, b.Method); err != nil {
			return 0, 0, fmt.Errorf("transform: %w", err)
		}
		if err := img.Anonymize(again, "fill"); err != nil {
			return 0, 0, fmt.Errorf("transform: %w", err)
		}
		done, filled = append(done, fresh...), append(filled, again...)
		added += len(fresh) + len(again)
		changed = changed[:0:0]
		for _, r := range append(fresh, again...) {
			changed = append(changed, normalised(r, img.Width(), img.Height()))
		}
	}
}

func normalised(r imaging.Rect, w, h int) meta.Box {
	return meta.Box{XMin: float64(r.X) / float64(w), XMax: float64(r.X+r.W) / float64(w),
		YMin: float64(r.Y) / float64(h), YMax: float64(r.Y+r.H) / float64(h)}
}

// overlapping returns the index of the first of rs that holds a fifth of r or more
// (-1: none).
func overlapping(r imaging.Rect, rs []imaging.Rect) int {
	for i, o := range rs {
		if a := r.Shared(o); a > 0 && 5*a >= r.W*r.H {
			return i
		}
	}
	return -1
}

// sameRegion returns the region of rs a re-check detection r is: one holding half of
// r or more (coveredBy), else one r holds half of, centred in it (seenLarger).
func sameRegion(r imaging.Rect, rs []imaging.Rect) (imaging.Rect, bool) {
	if o, ok := coveredBy(r, rs); ok {
		return o, true
	}
	return seenLarger(r, rs)
}

// seenLarger returns the first of rs that r holds half of or more, centred inside
// it: the detector reading an anonymized region's blob at a larger scale (seen with
// BlazeFace on pixelated boxes), not a new face beside it. Uniting the two and
// anonymizing again only grows the blob, round after round.
func seenLarger(r imaging.Rect, rs []imaging.Rect) (imaging.Rect, bool) {
	cx, cy := r.X+r.W/2, r.Y+r.H/2
	for _, o := range rs {
		if a := r.Shared(o); a > 0 && 2*a >= o.W*o.H &&
			cx >= o.X && cx < o.X+o.W && cy >= o.Y && cy < o.Y+o.H {
			return o, true
		}
	}
	return imaging.Rect{}, false
}

// coveredBy returns the first of rs that holds half of r or more.
func coveredBy(r imaging.Rect, rs []imaging.Rect) (imaging.Rect, bool) {
	for _, o := range rs {
		if a := r.Shared(o); a > 0 && 2*a >= r.W*r.H {
			return o, true
		}
	}
	return imaging.Rect{}, false
}
