package imaging

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
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
// stayed near 0.5. Shuffling the blocks keeps the pixelated look and the colours but
// not the layout; of several shuffles the least face-like is kept (faceLikeness).
// See docs/face-model.md "Anonymization" for the numbers behind 6.
const pixelateBlocks = 6

// shuffleTries is how many shuffles are drawn for a region; the least face-like wins.
const shuffleTries = 32

// faceLikeness scores how much a shuffle of cells (luminance lum, cell i placed at
// position j where perm[j] = i) looks like the start of a face to a cascade detector:
// over every window of cells 3 to 5 wide and 2 high, a top row whose outer cells
// (eyes) are darker than both the cells between them (the nose bridge) and the row
// below (cheeks). A random shuffle now and then falls into that pattern and a
// recall-tuned detector fires on the smooth blob (seen on crowds: 3 wide, and on the
// astronaut crowd with the eyes 5 cells apart); the least face-like of several
// shuffles leaves none.
func faceLikeness(lum []float64, perm []int, gw, gh int) float64 {
	at := func(x, y int) float64 { return lum[perm[y*gw+x]] }
	worst := 0.0
	for k := 3; k <= 5 && k <= gw; k++ {
		for y := 0; y+1 < gh; y++ {
			for x := 0; x+k <= gw; x++ {
				eyes := (at(x, y) + at(x+k-1, y)) / 2
				var between, below float64
				for i := 1; i < k-1; i++ {
					between += at(x+i, y)
				}
				for i := range k {
					below += at(x+i, y+1)
				}
				bridge := between/float64(k-2) - eyes
				cheeks := below/float64(k) - eyes
				if bridge > 0 && cheeks > 0 {
					worst = max(worst, bridge*cheeks)
				}
			}
		}
	}
	return worst
}

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

// pixelate replaces r with its average colours on a coarse grid, the cells
// permuted, smoothly (bilinearly) interpolated. Shuffling removes the face's layout;
// smoothing leaves no edges for a detector to latch onto. The permutation is seeded
// from the region, so the output is the same on every run.
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
	rng := rand.New(rand.NewPCG(uint64(r.X)<<32|uint64(r.Y), uint64(r.W)<<32|uint64(r.H)))
	perm, best := []int(nil), math.Inf(1)
	for range shuffleTries {
		q := rng.Perm(gw * gh)
		if f := faceLikeness(lum, q, gw, gh); f < best {
			perm, best = q, f
			if f == 0 {
				break
			}
		}
	}
	cell := func(cx, cy, c int) float64 {
		cx, cy = min(max(cx, 0), gw-1), min(max(cy, 0), gh-1)
		return cells[perm[cy*gw+cx]*ch+c]
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
