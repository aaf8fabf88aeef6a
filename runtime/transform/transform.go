// Package transform is the third step: anonymize the boxes chosen analyses found,
// strip metadata, and downscale and encode the processed image.
//
// Boxes are normalised, so the order of the configured transforms does not change
// the result: Transform starts from the pixels Prepare decoded (once, shrinking on
// load to the output size), anonymizes every region there, and one encode writes it.
package transform

import (
	"fmt"
	"math"
	"slices"

	"github.com/visionstack/visionstack/runtime/config"
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
}

// Output is the processed image.
type Output struct {
	Data    []byte
	Width   int
	Height  int
	Regions int // anonymized
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
	n := 0
	for _, b := range t.blurs { // each blur with its own method
		rects := regions(b, results, img.Width(), img.Height())
		if err := img.Anonymize(rects, b.Method); err != nil {
			return Output{}, fmt.Errorf("transform: %w", err)
		}
		n += len(rects)
	}
	data, err := img.JPEG(t.quality, t.strip)
	if err != nil {
		return Output{}, fmt.Errorf("transform: %w", err)
	}
	return Output{Data: data, Width: img.Width(), Height: img.Height(), Regions: n}, nil
}
