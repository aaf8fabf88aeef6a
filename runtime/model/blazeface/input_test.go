package blazeface

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The dense run's fast path at full resolution fills exactly what the general
// resampling does there, inside the image, past its edges and at offsets.
func TestCopyScaledMatchesResample(t *testing.T) {
	w, h := 97, 61
	rgb := noise(w, h, 3)
	for _, c := range []struct{ x0, y0, ow, oh int }{{0, 0, 128, 64}, {32, 16, 64, 64}, {-5, -7, 32, 96}, {90, 60, 32, 32}} {
		fast := make([]float32, c.ow*c.oh*3)
		slow := make([]float32, c.ow*c.oh*3)
		for i := range fast {
			fast[i] = 9 // stale values must be overwritten
		}
		copyScaled(rgb, w, h, c.x0, c.y0, fast, c.ow, c.oh)
		resample(rgb, w, h, float64(c.x0), float64(c.y0), 1, slow, c.ow, c.oh)
		if !slices.Equal(fast, slow) {
			t.Errorf("offset (%d, %d) %dx%d: the fast path differs from resampling", c.x0, c.y0, c.ow, c.oh)
		}
	}
}

// A look turned by a quarter turn samples exactly the pixels of the upright look,
// turned: the rotation goes the way the detector's LookTurns assume (the content
// turns against the angle) and lands on pixel centres.
func TestTurnedTurns(t *testing.T) {
	w, h := 40, 30
	rgb := noise(w, h, 7)
	const size = 16
	upright := make([]float32, size*size*3)
	quarter := make([]float32, size*size*3)
	turned(rgb, w, h, 20, 15, 1, 0, upright, size)
	turned(rgb, w, h, 20, 15, 1, math.Pi/2, quarter, size)
	for y := range size {
		for x := range size {
			// (x, y) of the turned look shows what the upright one shows at
			// (size-1-y, x): sampling turned by +90° reads (-dy, dx) for (dx, dy).
			for c := range 3 {
				if got, want := quarter[(y*size+x)*3+c], upright[(x*size+size-1-y)*3+c]; got != want {
					t.Fatalf("(%d, %d): %v, want %v", x, y, got, want)
				}
			}
		}
	}
	// Upright, the look is the image itself around the centre, to [-1, 1].
	if got, want := upright[0], float32(float64(rgb[(7*w+12)*3])/127.5-1); got != want {
		t.Fatalf("upright corner %v, want %v (pixel 12, 7)", got, want)
	}
}

// noise is a w×h RGB image of random bytes.
func noise(w, h int, seed uint64) []uint8 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	rgb := make([]uint8, w*h*3)
	for i := range rgb {
		rgb[i] = uint8(rng.IntN(256))
	}
	return rgb
}
