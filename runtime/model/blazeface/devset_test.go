package blazeface_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

// devSet builds the harder set the detector is tuned on, at test time, from the
// testdata: each hand-boxed face cut out with its surroundings, scaled to 20–60 px,
// rotated by up to ±30°, mirrored half the time (the profile in camera.png then
// looks the other way), blended into a 1024 px real background (nofaces/) with a
// soft oval edge, 20 faces an image. Ground truth: the face's size, centred where it
// was pasted.
func devSet(t testing.TB, hand []photo) []photo { return devSetSeeds(t, hand, 2) }

// devSetSeeds is devSet with seeds images a background (devSet: 2).
func devSetSeeds(t testing.TB, hand []photo, seeds int) []photo {
	t.Helper()
	type src struct {
		p photo
		g [4]float64
	}
	var faces []src
	for _, p := range hand {
		for _, g := range p.gt {
			faces = append(faces, src{p, g})
		}
	}
	var out []photo
	for bi, bg := range photos.NoFaces() {
		data, err := os.ReadFile(bg)
		if err != nil {
			t.Fatal(err)
		}
		big, err := imaging.Upscale(data, 1024, 92)
		if err != nil {
			t.Fatal(err)
		}
		for seed := range seeds {
			img, _, err := imaging.Limits{}.Decode(big, 1024, false)
			if err != nil {
				t.Fatal(err)
			}
			rgb, w, h, err := img.RGB()
			img.Close()
			if err != nil {
				t.Fatal(err)
			}
			p := photo{name: fmt.Sprintf("dev-%d-%d", bi, seed), rgb: rgb, w: w, h: h}
			rng := rand.New(rand.NewPCG(uint64(bi), uint64(seed)))
			const cols, rows = 5, 4
			cw, ch := float64(w)/cols, float64(h)/rows
			for k := range cols * rows {
				f := faces[rng.IntN(len(faces))]
				size := 20 + rng.Float64()*40
				angle := (rng.Float64()*60 - 30) * math.Pi / 180
				mirror := rng.IntN(2) == 1
				cx := (float64(k%cols)+0.5)*cw + (rng.Float64()-0.5)*(cw-2*size)*0.5
				cy := (float64(k/cols)+0.5)*ch + (rng.Float64()-0.5)*(ch-2*size)*0.5
				paste(&p, f.p, f.g, cx, cy, size, angle, mirror)
				p.gt = append(p.gt, [4]float64{cx - size/2, cy - size/2, cx + size/2, cy + size/2})
			}
			out = append(out, p)
		}
	}
	return out
}

// paste draws the face box g of from (with 0.4 of its size around it) into to,
// centred at (cx, cy), the face size pixels wide, rotated and maybe mirrored.
func paste(to *photo, from photo, g [4]float64, cx, cy, size, angle float64, mirror bool) {
	fw := g[2] - g[0]
	fcx, fcy := (g[0]+g[2])/2, (g[1]+g[3])/2
	scale := fw / size // source pixels per destination pixel
	r := size * 0.7    // the pasted oval's radius, destination pixels
	cos, sin := math.Cos(angle), math.Sin(angle)
	for y := int(cy - r); y <= int(cy+r); y++ {
		for x := int(cx - r); x <= int(cx+r); x++ {
			if x < 0 || y < 0 || x >= to.w || y >= to.h {
				continue
			}
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			d := math.Hypot(dx, dy) / r
			if d >= 1 {
				continue
			}
			alpha := math.Min(1, (1-d)*4) // soft edge over the outer quarter
			// Back to source coordinates: un-rotate, un-mirror, scale.
			sx, sy := cos*dx+sin*dy, -sin*dx+cos*dy
			if mirror {
				sx = -sx
			}
			sx, sy = fcx+sx*scale, fcy+sy*scale
			xi, yi := int(sx), int(sy)
			if xi < 0 || yi < 0 || xi >= from.w || yi >= from.h {
				continue
			}
			for c := range 3 {
				o := (y*to.w+x)*3 + c
				v := float64(from.rgb[(yi*from.w+xi)*3+c])
				to.rgb[o] = uint8(alpha*v + (1-alpha)*float64(to.rgb[o]) + 0.5)
			}
		}
	}
}
