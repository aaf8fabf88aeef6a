package blazeface_test

import (
	"math"
	"testing"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
)

// A dense run over a 256×256 input is one window: the graph translated with a free
// input size computes what the fixed-size one does, anchors in the same order; and
// over a larger image it still decodes a face where a window over it does.
func TestDenseRunIsWindows(t *testing.T) {
	net := newNet(t)
	p := loadPhotos(t)[0]
	in := whole(p, blazeface.Size)
	px := net.Pixels()
	win, err := net.Run(in, 1)
	if err != nil {
		t.Fatal(err)
	}
	dense, err := net.RunDense(in, blazeface.Size, blazeface.Size)
	if err != nil {
		t.Fatal(err)
	}
	// What the benchmarks' network floor counts (bench/cmd/benchreport).
	if got := net.Pixels() - px; got != 2*blazeface.Size*blazeface.Size {
		t.Errorf("a window and a dense run of its size counted %d pixels, want %d", got, 2*blazeface.Size*blazeface.Size)
	}
	worst := 0.0
	for i := range win[0].Scores {
		worst = math.Max(worst, math.Abs(float64(win[0].Scores[i]-dense.Scores[i])))
	}
	for i := range win[0].Boxes {
		worst = math.Max(worst, math.Abs(float64(win[0].Boxes[i]-dense.Boxes[i])))
	}
	if worst > 1e-4 {
		t.Errorf("dense run differs from the window by %g", worst)
	}
	if _, err := net.RunDense(in[:100*96*3], 100, 96); err == nil {
		t.Error("a dense input of 100×96 (not a multiple of 32) was accepted")
	}
	// Every hand-boxed face of the photo is found by the dense detector too.
	d := &blazeface.Detector{Net: net, Dense: 1024, DenseMin: 0.75}
	faces, err := d.Detect(p.rgb, p.w, p.h, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range p.gt {
		if !matched(g, faces) {
			t.Errorf("%s: face %v not found with the dense run", p.name, g)
		}
	}
	// A look around each face finds it again, for a fraction of a full scan.
	var around []blazeface.Area
	for _, f := range faces {
		around = append(around, blazeface.Area{X0: f.X0, Y0: f.Y0, X1: f.X1, Y1: f.Y1})
	}
	before := d.Runs()
	again, err := d.Around(p.rgb, p.w, p.h, around, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range p.gt {
		if !matched(g, again) {
			t.Errorf("%s: face %v not found again around where it was", p.name, g)
		}
	}
	if runs, full := d.Runs()-before, int64(d.Windows(p.w, p.h)); runs*4 > full {
		t.Errorf("looking around %d faces cost %d windows, a full scan %d", len(around), runs, full)
	}
	// A face the second look confirms is still held to the caller's threshold.
	strict := &blazeface.Detector{Net: net, Dense: 1024, DenseMin: 0.99, LookFrom: 0.3, Confirm: 0.4}
	for _, thr := range []float64{0.5, 0.9} {
		got, err := strict.Detect(p.rgb, p.w, p.h, thr)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range got {
			if f.Score < thr {
				t.Errorf("threshold %.1f: a face scored %.3f", thr, f.Score)
			}
		}
	}
	if want := 1 + 11; d.Windows(1024, 683) != want {
		t.Errorf("a 1024×683 image costs %d windows, want %d (whole image + a 1024×704 dense run)", d.Windows(1024, 683), want)
	}
}
