package blazeface

import (
	"fmt"
	"slices"
	"sync/atomic"
)

// Detector finds faces of any size in an RGB image: one window over the whole image
// for large faces, and, when the image is larger than Tile, overlapping Tile-pixel
// windows for small ones (a 20 px face in a 1024 px image is 5 px in a whole-image
// window; the network needs about 16). All windows run as one batch.
type Detector struct {
	Net     *Net
	Tile    int     // window side for small faces, in image pixels; 0: whole image only
	Overlap float64 // of neighbouring tiles, a fraction of Tile: a face on a seam is whole in one

	runs atomic.Int64 // windows run, for tests and benchmarks
}

// Runs is how many windows the detector has run.
func (d *Detector) Runs() int64 { return d.runs.Load() }

// window is a square of the image, side pixels from (x, y).
type window struct{ x, y, side float64 }

func (d *Detector) windows(w, h int) []window {
	long := float64(max(w, h))
	ws := []window{{0, 0, long}}
	if d.Tile <= 0 || max(w, h) <= d.Tile {
		return ws
	}
	t := float64(d.Tile)
	step := t * (1 - d.Overlap)
	starts := func(n int) []float64 {
		var s []float64
		for x := 0.0; ; x += step {
			if x+t >= float64(n) {
				s = append(s, max(float64(n)-t, 0))
				break
			}
			s = append(s, x)
		}
		return s
	}
	for _, y := range starts(h) {
		for _, x := range starts(w) {
			ws = append(ws, window{x, y, t})
		}
	}
	return ws
}

// Windows is how many network runs an image of w×h pixels costs.
func (d *Detector) Windows(w, h int) int { return len(d.windows(w, h)) }

// Detect returns the faces scoring at least threshold, in image pixels.
func (d *Detector) Detect(rgb []uint8, w, h int, threshold float64) ([]Face, error) {
	return d.DetectNear(rgb, w, h, threshold, nil)
}

// Area is a rectangle of the image in pixels: [X0, X1) × [Y0, Y1).
type Area struct{ X0, Y0, X1, Y1 float64 }

// nearMargin is how far past an area's grown edge a tile still counts as near: a
// face box reaches a little past the window that found it (BoxGrowth).
const nearMargin = 48

// DetectNear is Detect on the windows that can see near the areas (nil: all): the
// whole-image window, and the tiles overlapping an area grown by half its size on
// each side. A re-check after only those areas changed repeats no other tile, whose
// pixels and so whose faces are as they were.
func (d *Detector) DetectNear(rgb []uint8, w, h int, threshold float64, near []Area) ([]Face, error) {
	if len(rgb) != w*h*3 {
		return nil, fmt.Errorf("blazeface: %d bytes for %dx%d RGB", len(rgb), w, h)
	}
	ws := d.windows(w, h)
	if near != nil {
		ws = slices.DeleteFunc(ws, func(win window) bool {
			if win.side >= float64(max(w, h)) {
				return false // the whole image
			}
			return !slices.ContainsFunc(near, func(a Area) bool {
				mx, my := (a.X1-a.X0)/2+nearMargin, (a.Y1-a.Y0)/2+nearMargin
				return win.x < a.X1+mx && win.x+win.side > a.X0-mx && win.y < a.Y1+my && win.y+win.side > a.Y0-my
			})
		})
	}
	d.runs.Add(int64(len(ws)))
	const n = Size * Size * 3
	input := make([]float32, len(ws)*n)
	for i, win := range ws {
		Window(rgb, w, h, win.x, win.y, win.side, input[i*n:(i+1)*n])
	}
	raws, err := d.Net.Run(input, len(ws))
	if err != nil {
		return nil, err
	}
	var faces []Face
	for i, r := range raws {
		s := ws[i].side / Size
		for _, f := range r.Decode(threshold) {
			faces = append(faces, Face{
				X0: ws[i].x + f.X0*s, Y0: ws[i].y + f.Y0*s,
				X1: ws[i].x + f.X1*s, Y1: ws[i].y + f.Y1*s, Score: f.Score,
			})
		}
	}
	return Suppress(faces, 0.3), nil
}
