package blazeface

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The dense run's fast path at full resolution fills exactly what the general
// resampling does there, inside the image, past its edges and at offsets.
func TestCopyScaledMatchesResample(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w, h := 97, 61
	rgb := make([]uint8, w*h*3)
	for i := range rgb {
		rgb[i] = uint8(rng.IntN(256))
	}
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
