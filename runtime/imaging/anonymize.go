package imaging

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
)

// Rect is a pixel rectangle.
type Rect struct{ X, Y, W, H int }

// Anonymization methods.
const (
	MethodPixelate = "pixelate"
	MethodGaussian = "gaussian"
	MethodFill     = "fill"
)

// pixelateBlocks is how many blocks span a region's longer side. Plain pixelation
// keeps a face's layout (dark eyes above a light cheek above a dark mouth): measured on
// the sample photos, OpenCV still found faces in some boxes and SSIM at face scale
// stayed near 0.5. See docs/face-model.md "Anonymization" for the numbers behind 6.
const pixelateBlocks = 6

// pixelateSpread steepens the ordered blocks' ramp about the region's mean colour.
// SSIM at face scale rewards a smooth patch set against smooth skin; a steeper ramp
// of the region's own colours scores lower there (worst box of the samples 0.398 at
// 1, 0.374 at 1.3) and OpenCV finds no more faces.
const pixelateSpread = 1.3

// Anonymize destroys the content of each rectangle (clamped to the image). It edits
// the pixels in Go memory and reloads them as one image of their own: no chain of
// libvips region copies and inserts whose sources must outlive the result (that
// chain crashed libvips under load, a C-heap double free). Call it on a decoded
// (random-access) image.
func (im *Image) Anonymize(rects []Rect, method string) error {
	defer runtime.KeepAlive(im)
	var todo []Rect
	for _, r := range rects {
		if r = r.clamp(im.Width(), im.Height()); r.W >= 2 && r.H >= 2 {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	todo = merged(todo)
	p, err := im.pixels()
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	for _, r := range todo {
		switch method {
		case MethodFill:
			p.fill(r)
		case MethodGaussian:
			err = p.gaussian(r)
		default:
			err = p.pixelate(r)
		}
		if err != nil {
			return fmt.Errorf("anonymize %+v: %w", r, err)
		}
	}
	out, err := p.image()
	if err != nil {
		return fmt.Errorf("anonymize: %w", err)
	}
	im.ref.Close()
	im.ref, im.pins = out.ref, out.pins
	return nil
}

// merged unites overlapping rectangles (and those that then overlap) into their
// bounding rectangle: each mosaic is one smooth ramp, and no region's border cuts
// through another's box. Laid one over the other, a small false alarm at a face's
// corner left a hard step inside the face's box, or the face's border inside its
// box. The union covers more, never less.
func merged(rs []Rect) []Rect {
	out := slices.Clone(rs)
	for again := true; again; {
		again = false
		for i := 0; i < len(out); i++ {
			for j := i + 1; j < len(out); j++ {
				if out[i].Shared(out[j]) > 0 {
					out[i] = out[i].Union(out[j])
					out = slices.Delete(out, j, j+1)
					again = true
					j = i
				}
			}
		}
	}
	return out
}

// Shared is the area r has in common with o.
func (r Rect) Shared(o Rect) int {
	w := min(r.X+r.W, o.X+o.W) - max(r.X, o.X)
	h := min(r.Y+r.H, o.Y+o.H) - max(r.Y, o.Y)
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}

// Union is the smallest rectangle holding r and o.
func (r Rect) Union(o Rect) Rect {
	x0, y0 := min(r.X, o.X), min(r.Y, o.Y)
	return Rect{x0, y0, max(r.X+r.W, o.X+o.W) - x0, max(r.Y+r.H, o.Y+o.H) - y0}
}

func (r Rect) clamp(w, h int) Rect {
	x0, y0 := max(r.X, 0), max(r.Y, 0)
	x1, y1 := min(r.X+r.W, w), min(r.Y+r.H, h)
	return Rect{x0, y0, max(x1-x0, 0), max(y1-y0, 0)}
}

// colour is how many of p's bands are colour (the rest, if any, is alpha).
func (p *pixels) colour() int {
	if p.bands >= 3 {
		return 3
	}
	return 1
}

// fill paints r black (opaque).
func (p *pixels) fill(r Rect) {
	colour := p.colour()
	for y := r.Y; y < r.Y+r.H; y++ {
		row := p.pix[(y*p.w+r.X)*p.bands : (y*p.w+r.X+r.W)*p.bands]
		for i := range row {
			row[i] = 0
			if i%p.bands >= colour {
				row[i] = 255
			}
		}
	}
}

// gaussian blurs r with a sigma of a quarter of its long side, in a private libvips
// image of its own, and copies the result back.
func (p *pixels) gaussian(r Rect) error {
	sub := p.crop(r)
	im, err := sub.image()
	if err != nil {
		return err
	}
	defer im.Close()
	if err := im.ref.GaussianBlur(float64(max(r.W, r.H)) / 4); err != nil {
		return vipsErr(err)
	}
	blurred, err := im.pixels()
	if err != nil {
		return err
	}
	if blurred.w != r.W || blurred.h != r.H || blurred.bands != p.bands {
		return fmt.Errorf("blur: %dx%dx%d for %dx%dx%d", blurred.w, blurred.h, blurred.bands, r.W, r.H, p.bands)
	}
	for y := range r.H {
		copy(p.pix[((r.Y+y)*p.w+r.X)*p.bands:], blurred.pix[y*r.W*p.bands:(y+1)*r.W*p.bands])
	}
	return nil
}

// pixelate replaces r with its average colours on a coarse grid, ordered by
// luminance (darkest top left, brightest bottom right, row by row), smoothly
// (bilinearly) interpolated. The order keeps the colours but nothing of where they
// were: the output depends only on the blocks' colours, not their places. Shuffled
// blocks (this method before) now and then fell into a face's pattern: OpenCV's
// profile cascade read 8 of 79 shuffled boxes in the sample photos (as they are,
// mirrored and at 70%) as a face, even keeping the least face-like of 32 shuffles.
// It reads none of these ramps; ramps brightest at the top or to one side did not
// fare so well (docs/face-model.md). Smoothing leaves no edges to latch onto.
func (p *pixels) pixelate(r Rect) error {
	long := max(r.W, r.H)
	// At least 2 cells a side, and at least a pixel a cell (r is at least 2×2).
	gw := min(max(2, r.W*pixelateBlocks/long), r.W)
	gh := min(max(2, r.H*pixelateBlocks/long), r.H)
	cells := p.cells(r, gw, gh)
	ch := p.colour()
	lum := make([]float64, gw*gh)
	for i := range lum {
		if ch == 3 {
			lum[i] = 0.299*cells[i*3] + 0.587*cells[i*3+1] + 0.114*cells[i*3+2]
		} else {
			lum[i] = cells[i]
		}
	}
	order := make([]int, gw*gh) // order[j] is the cell placed at position j
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lum[a], lum[b]) })
	for c := range ch {
		mean := 0.0
		for i := range gw * gh {
			mean += cells[i*ch+c]
		}
		mean /= float64(gw * gh)
		for i := range gw * gh {
			cells[i*ch+c] = mean + pixelateSpread*(cells[i*ch+c]-mean)
		}
	}
	cell := func(cx, cy, c int) float64 {
		cx, cy = min(max(cx, 0), gw-1), min(max(cy, 0), gh-1)
		return cells[order[cy*gw+cx]*ch+c]
	}
	for y := range r.H {
		fy := (float64(y)+0.5)*float64(gh)/float64(r.H) - 0.5
		y0 := int(math.Floor(fy))
		ty := fy - float64(y0)
		for x := range r.W {
			fx := (float64(x)+0.5)*float64(gw)/float64(r.W) - 0.5
			x0 := int(math.Floor(fx))
			tx := fx - float64(x0)
			o := ((r.Y+y)*p.w + r.X + x) * p.bands
			for c := range ch {
				v := (1-ty)*((1-tx)*cell(x0, y0, c)+tx*cell(x0+1, y0, c)) + ty*((1-tx)*cell(x0, y0+1, c)+tx*cell(x0+1, y0+1, c))
				p.pix[o+c] = uint8(min(max(v+0.5, 0), 255))
			}
			for c := ch; c < p.bands; c++ {
				p.pix[o+c] = 255 // opaque: a transparent face is still a face
			}
		}
	}
	return nil
}

// cells are r's average colours on a gw×gh grid: each cell the mean of the pixels
// it covers (cell edges at whole pixels), computed here rather than by a libvips
// resize of a copy of the region — no round trip through libvips per face, and
// values that do not depend on libvips' kernels or SIMD path.
func (p *pixels) cells(r Rect, gw, gh int) []float64 {
	ch := p.colour()
	cells := make([]float64, gw*gh*ch)
	for cy := range gh {
		y0, y1 := r.Y+cy*r.H/gh, r.Y+(cy+1)*r.H/gh
		for cx := range gw {
			x0, x1 := r.X+cx*r.W/gw, r.X+(cx+1)*r.W/gw
			cell := cells[(cy*gw+cx)*ch : (cy*gw+cx+1)*ch]
			for y := y0; y < y1; y++ {
				row := p.pix[(y*p.w+x0)*p.bands : (y*p.w+x1)*p.bands]
				for o := 0; o < len(row); o += p.bands {
					for c := range cell {
						cell[c] += float64(row[o+c])
					}
				}
			}
			n := float64((y1 - y0) * (x1 - x0))
			for c := range cell {
				cell[c] /= n
			}
		}
	}
	return cells
}
