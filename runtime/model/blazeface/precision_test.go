package blazeface_test

import (
	"fmt"
	"testing"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/testdata/photos"
)

// The default detector's precision on photos without faces: 14 licensed photos
// (animals, a cup, textures, microscopy, a rocket, the sky, text; the two nofaces/
// controls among them), each as it is, mirrored, and enlarged to the analysis' 1024
// px (a small photo's texture then reaches the sizes small faces have): 42 images,
// at most one false alarm per 10. Before every face needed the second look and the
// full-range network's veto the default fired 9 times on these 14 photos as they
// are (the cat, the cup twice, a cell, the logo, a retina scan, ...).
func TestNoFacePrecision(t *testing.T) {
	files, err := photos.NoFaceSet()
	if err != nil {
		t.Fatal(err) // not a skip: scripts/install-deps.sh fetches them
	}
	net := newNet(t)
	p := builtin.DefaultParams
	d := &blazeface.Detector{Net: net, Dense: p.Dense, DenseMin: p.DenseMin, LookFrom: p.LookFrom, Confirm: p.Confirm,
		LookTurns: p.LookTurns, TurnFrom: p.TurnFrom, LookAll: p.LookAll, Veto: vetoNet(t), VetoBelow: p.VetoBelow, LookSure: p.LookSure, VetoSure: p.VetoSure, VetoFree: p.VetoFree}
	images, alarms := 0, 0
	var where []string
	for _, f := range files {
		for _, v := range noFaceVariants(t, f) {
			faces, err := d.Detect(v.rgb, v.w, v.h, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			images++
			alarms += len(faces)
			for _, fc := range faces {
				where = append(where, fmt.Sprintf("%s %.0f px at %.2f", v.name, fc.X1-fc.X0, fc.Score))
			}
		}
	}
	t.Logf("%d false alarms on %d no-face images: %v", alarms, images, where)
	if alarms*10 > images {
		t.Errorf("%d false alarms on %d no-face images, more than one per 10: %v", alarms, images, where)
	}
}

// noFaceVariants is a photo as it is (at most 1024 px), mirrored, and enlarged so
// that its long side is 1024 px (as it is when it already is).
func noFaceVariants(t *testing.T, file string) []photo {
	p := decode(t, file)
	m := photo{name: p.name + " mirrored", rgb: make([]uint8, len(p.rgb)), w: p.w, h: p.h}
	for y := range p.h {
		for x := range p.w {
			copy(m.rgb[(y*p.w+x)*3:(y*p.w+x)*3+3], p.rgb[(y*p.w+p.w-1-x)*3:])
		}
	}
	return []photo{p, m, enlarged(p, 1024)}
}

// enlarged is p scaled (nearest neighbour would leave blocks; bilinear) so that its
// long side is long.
func enlarged(p photo, long int) photo {
	s := float64(long) / float64(max(p.w, p.h))
	if s <= 1 {
		return photo{name: p.name + " (1024 px already)", rgb: p.rgb, w: p.w, h: p.h}
	}
	w, h := int(float64(p.w)*s), int(float64(p.h)*s)
	out := photo{name: p.name + " enlarged", rgb: make([]uint8, w*h*3), w: w, h: h}
	for y := range h {
		fy := min(max((float64(y)+0.5)/s-0.5, 0), float64(p.h-1))
		y0 := int(fy)
		y1, ty := min(y0+1, p.h-1), fy-float64(y0)
		for x := range w {
			fx := min(max((float64(x)+0.5)/s-0.5, 0), float64(p.w-1))
			x0 := int(fx)
			x1, tx := min(x0+1, p.w-1), fx-float64(x0)
			for c := range 3 {
				at := func(x, y int) float64 { return float64(p.rgb[(y*p.w+x)*3+c]) }
				v := (1-ty)*((1-tx)*at(x0, y0)+tx*at(x1, y0)) + ty*((1-tx)*at(x0, y1)+tx*at(x1, y1))
				out.rgb[(y*w+x)*3+c] = uint8(v + 0.5)
			}
		}
	}
	return out
}
