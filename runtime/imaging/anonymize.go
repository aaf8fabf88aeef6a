package imaging

import (
	"fmt"
	"math"

	"github.com/davidbyttow/govips/v2/vips"
)

// Rect is a pixel rectangle.
type Rect struct{ X, Y, W, H int }

// Anonymization methods.
const (
	MethodPixelate = "pixelate"
	MethodGaussian = "gaussian"
	MethodFill     = "fill"
)

// pixelateBlocks is how many blocks span a region's longer side. Measured on the
// sample photos against OpenCV's cascades (see README "Anonymization"): coarse blocks
// then a blur of one block width leave no detectable face and no facial structure.
const pixelateBlocks = 5

// Anonymize destroys the content of each rectangle (clamped to the image).
func (im *Image) Anonymize(rects []Rect, method string) error {
	for _, r := range rects {
		r = r.clamp(im.Width(), im.Height())
		if r.W < 2 || r.H < 2 {
			continue
		}
		if err := im.anonymizeOne(r, method); err != nil {
			return fmt.Errorf("anonymize %+v: %w", r, err)
		}
	}
	return nil
}

func (r Rect) clamp(w, h int) Rect {
	x0, y0 := max(r.X, 0), max(r.Y, 0)
	x1, y1 := min(r.X+r.W, w), min(r.Y+r.H, h)
	return Rect{x0, y0, max(x1-x0, 0), max(y1-y0, 0)}
}

func (im *Image) anonymizeOne(r Rect, method string) error {
	if method == MethodFill {
		if im.ref.HasAlpha() {
			if err := im.flatten(); err != nil {
				return err
			}
		}
		// Draw in place needs a private copy of the pixels.
		cp, err := im.ref.Copy()
		if err != nil {
			return err
		}
		im.ref.Close()
		im.ref = cp
		return im.ref.DrawRect(vips.ColorRGBA{R: 0, G: 0, B: 0, A: 255}, r.X, r.Y, r.W, r.H, true)
	}
	sub, err := im.ref.Copy()
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.ExtractArea(r.X, r.Y, r.W, r.H); err != nil {
		return err
	}
	long := float64(max(r.W, r.H))
	switch method {
	case MethodGaussian:
		if err := sub.GaussianBlur(long / 4); err != nil {
			return err
		}
	default: // pixelate
		block := math.Max(2, long/pixelateBlocks)
		if err := sub.Resize(1/block, vips.KernelLinear); err != nil {
			return err
		}
		if err := sub.ResizeWithVScale(float64(r.W)/float64(sub.Width()), float64(r.H)/float64(sub.Height()), vips.KernelNearest); err != nil {
			return err
		}
		if sub.Width() != r.W || sub.Height() != r.H {
			if err := sub.EmbedBackgroundRGBA(0, 0, r.W, r.H, &vips.ColorRGBA{}); err != nil {
				return err
			}
		}
		// Blur the block edges away: edges between blocks are what detectors latch onto.
		if err := sub.GaussianBlur(block / 2); err != nil {
			return err
		}
	}
	return im.ref.Insert(sub, r.X, r.Y, false, nil)
}
