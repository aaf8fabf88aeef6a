package imaging_test

import (
	"bytes"
	"image"
	"image/png"
	"math/rand/v2"
	"testing"

	"github.com/visionstack/visionstack/runtime/imaging"
)

// Overlapping regions are anonymized as one, their bounding rectangle: no region's
// border cuts through the other. Laid one over the other in the order given, a small
// false alarm at a face's corner put a hard step inside the face box (seen on
// faceapi_sample2: edge energy 57 before, 109 after); the other way round, the
// face's border cut through the small box.
func TestOverlappingRegionsLeaveNoEdgeInEither(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := image.NewRGBA(image.Rect(0, 0, 240, 240))
	for i := range src.Pix {
		src.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			src.Pix[i] = 255
		}
	}
	for y := 0; y < 120; y++ { // a dark top half, so regions' ramps differ
		for x := range 240 {
			o := src.PixOffset(x, y)
			src.Pix[o], src.Pix[o+1], src.Pix[o+2] = src.Pix[o]/8, src.Pix[o+1]/8, src.Pix[o+2]/8
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{imaging.MethodPixelate, imaging.MethodGaussian, imaging.MethodFill} {
		im, _, err := imaging.Limits{}.Decode(buf.Bytes(), imaging.MaxSide, false)
		if err != nil {
			t.Fatal(err)
		}
		face := imaging.Rect{X: 60, Y: 60, W: 140, H: 140}
		small := imaging.Rect{X: 30, Y: 20, W: 70, H: 70} // over the face's top-left corner
		if err := im.Anonymize([]imaging.Rect{face, small}, method); err != nil {
			t.Fatal(err)
		}
		pix, w, _, err := im.Gray()
		im.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []imaging.Rect{face, small} {
			// The largest step between neighbours inside r, away from its edge.
			worst, wx, wy := 0, 0, 0
			for y := r.Y + 2; y < r.Y+r.H-2; y++ {
				for x := r.X + 2; x < r.X+r.W-2; x++ {
					v := int(pix[y*w+x])
					for _, n := range []int{int(pix[y*w+x+1]), int(pix[(y+1)*w+x])} {
						if d := max(v-n, n-v); d > worst {
							worst, wx, wy = d, x, y
						}
					}
				}
			}
			// A smooth replacement of 70 px and more steps a few levels a pixel at
			// most; another region's border stepped tens of levels.
			if worst > 12 {
				t.Errorf("%s: a step of %d levels at %d,%d inside region %+v: another region's border", method, worst, wx, wy, r)
			}
		}
	}
}
