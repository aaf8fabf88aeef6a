package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"runtime"

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

// pixelateBlocks is how many blocks span a region's longer side. Plain pixelation
// keeps a face's layout (dark eyes above a light cheek above a dark mouth): measured on
// the sample photos, OpenCV still found faces in some boxes and SSIM at face scale
// stayed near 0.5. Shuffling the blocks keeps the pixelated look and the colours but
// not the layout; of several shuffles the least face-like is kept (faceLikeness).
// See README "Anonymization" for the numbers behind 6.
const pixelateBlocks = 6

// shuffleTries is how many shuffles are drawn for a region; the least face-like wins.
const shuffleTries = 32

// faceLikeness scores how much a shuffle of cells (luminance lum, cell i placed at
// position j where perm[j] = i) looks like the start of a face to a cascade detector:
// over every 3×3 window of cells, a top row whose outer cells (eyes) are darker than
// both the middle one (the nose bridge) and the row below (cheeks). A random shuffle
// now and then falls into that pattern and a recall-tuned detector fires on the
// smooth blob (seen on crowds); the least face-like of several shuffles leaves none.
func faceLikeness(lum []float64, perm []int, gw, gh int) float64 {
	at := func(x, y int) float64 { return lum[perm[y*gw+x]] }
	worst := 0.0
	for y := 0; y+2 < gh; y++ {
		for x := 0; x+2 < gw; x++ {
			eyes := (at(x, y) + at(x+2, y)) / 2
			bridge := at(x+1, y) - eyes
			cheeks := (at(x, y+1)+at(x+1, y+1)+at(x+2, y+1))/3 - eyes
			if bridge > 0 && cheeks > 0 {
				worst = max(worst, bridge*cheeks)
			}
		}
	}
	return worst
}

// Anonymize destroys the content of each rectangle (clamped to the image). Call it on
// a decoded (random-access) image.
func (im *Image) Anonymize(rects []Rect, method string) error {
	defer runtime.KeepAlive(im)
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
	default: // pixelate: coarse blocks, shuffled, edges softened
		grid, err := shuffledBlocks(sub, r)
		if err != nil {
			return err
		}
		defer grid.Close()
		if err := im.ref.Insert(grid.ref, r.X, r.Y, false, nil); err != nil {
			return vipsErr(err)
		}
		im.absorb(grid) // im now reads the patch's buffer lazily
		return nil
	}
	return im.ref.Insert(sub, r.X, r.Y, false, nil)
}

// shuffledBlocks builds the replacement for region r from sub (its pixels): the
// region's average colours on a coarse grid, cells permuted, smoothly (bilinearly)
// interpolated. Shuffling removes the face's layout; smoothing leaves no edges for a
// detector to latch onto. The permutation is seeded from the region, so the output
// is the same on every run.
func shuffledBlocks(sub *vips.ImageRef, r Rect) (*Image, error) {
	long := max(r.W, r.H)
	nx := max(2, r.W*pixelateBlocks/long)
	ny := max(2, r.H*pixelateBlocks/long)
	if err := sub.ResizeWithVScale(float64(nx)/float64(r.W), float64(ny)/float64(r.H), vips.KernelLinear); err != nil {
		return nil, err
	}
	bands := sub.Bands()
	raw, err := sub.ToBytes()
	if err != nil {
		return nil, vipsErr(err)
	}
	gw, gh := sub.Width(), sub.Height()
	if len(raw) != gw*gh*bands {
		return nil, fmt.Errorf("block grid: %d bytes for %dx%dx%d", len(raw), gw, gh, bands)
	}
	lum := make([]float64, gw*gh)
	for i := range lum {
		if bands >= 3 {
			lum[i] = 0.299*float64(raw[i*bands]) + 0.587*float64(raw[i*bands+1]) + 0.114*float64(raw[i*bands+2])
		} else {
			lum[i] = float64(raw[i*bands])
		}
	}
	rng := rand.New(rand.NewPCG(uint64(r.X)<<32|uint64(r.Y), uint64(r.W)<<32|uint64(r.H)))
	perm, best := []int(nil), math.Inf(1)
	for range shuffleTries {
		p := rng.Perm(gw * gh)
		if f := faceLikeness(lum, p, gw, gh); f < best {
			perm, best = p, f
			if f == 0 {
				break
			}
		}
	}
	colour := bands >= 3
	ch := 1
	if colour {
		ch = 3
	}
	cell := func(cx, cy, c int) float64 {
		cx, cy = min(max(cx, 0), gw-1), min(max(cy, 0), gh-1)
		return float64(raw[perm[cy*gw+cx]*bands+c])
	}
	patch := image.NewNRGBA(image.Rect(0, 0, r.W, r.H))
	for y := range r.H {
		fy := (float64(y)+0.5)*float64(gh)/float64(r.H) - 0.5
		y0 := int(math.Floor(fy))
		ty := fy - float64(y0)
		for x := range r.W {
			fx := (float64(x)+0.5)*float64(gw)/float64(r.W) - 0.5
			x0 := int(math.Floor(fx))
			tx := fx - float64(x0)
			o := patch.PixOffset(x, y)
			for c := range 3 {
				cc := min(c, ch-1)
				v := (1-ty)*((1-tx)*cell(x0, y0, cc)+tx*cell(x0+1, y0, cc)) + ty*((1-tx)*cell(x0, y0+1, cc)+tx*cell(x0+1, y0+1, cc))
				patch.Pix[o+c] = uint8(min(max(v+0.5, 0), 255))
			}
			patch.Pix[o+3] = 255
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(&buf, patch); err != nil {
		return nil, err
	}
	grid, err := fromBuffer(buf.Bytes(), vips.NewImageFromBuffer)
	if err != nil {
		return nil, vipsErr(err)
	}
	keep := bands // match the image: gray stays gray, alpha stays (opaque)
	if !colour {
		err = grid.ref.ToColorSpace(vips.InterpretationBW)
		if err == nil && keep == 1 {
			err = grid.ref.ExtractBand(0, 1)
		}
	} else if keep == 3 {
		err = grid.ref.ExtractBand(0, 3)
	}
	if err != nil {
		grid.Close()
		return nil, err
	}
	return grid, nil
}
