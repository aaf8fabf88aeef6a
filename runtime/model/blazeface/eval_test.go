package blazeface_test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/testdata/photos"
)

func matched(gt [4]float64, faces []blazeface.Face) bool {
	for _, f := range faces {
		if blazeface.IoU(blazeface.Face{X0: gt[0], Y0: gt[1], X1: gt[2], Y1: gt[3]}, f) >= 0.3 {
			return true
		}
	}
	return false
}

type tally struct {
	found, faces, alarms, images int
	elapsed                      time.Duration
	runs                         int
}

func (s tally) String() string {
	return fmt.Sprintf("recall %d/%d (%.3f), %d false alarms, %.1f ms/image (%d windows)",
		s.found, s.faces, float64(s.found)/float64(max(s.faces, 1)), s.alarms,
		float64(s.elapsed.Microseconds())/1e3/float64(max(s.images, 1)), s.runs)
}

func evaluate(t testing.TB, d *blazeface.Detector, set []photo, threshold float64) (tally, []string) {
	var s tally
	var misses []string
	for _, p := range set {
		start := time.Now()
		faces, err := d.Detect(p.rgb, p.w, p.h, threshold)
		if err != nil {
			t.Fatal(err)
		}
		s.elapsed += time.Since(start)
		s.images++
		s.runs += d.Windows(p.w, p.h)
		for _, g := range p.gt {
			s.faces++
			if matched(g, faces) {
				s.found++
			} else {
				misses = append(misses, fmt.Sprintf("%s %v", p.name, g))
			}
		}
		for _, f := range faces {
			hit := false
			for _, g := range p.gt {
				if blazeface.IoU(blazeface.Face{X0: g[0], Y0: g[1], X1: g[2], Y1: g[3]}, f) >= 0.1 {
					hit = true
				}
			}
			if !hit {
				s.alarms++
			}
		}
	}
	return s, misses
}

var sweep = flag.Bool("sweep", false, "print recall, false alarms and time for other detector settings and thresholds")

// The default detector (builtin.DefaultParams: the whole-image window and a dense
// run at full resolution with a second look at its doubtful faces, threshold 0.5) on the hand-boxed photos, the no-face
// controls and the harder dev set; the re-check's detector (whole image and 512 px
// tiles) beside it. The dev set's floor is what the default reaches today, below the
// 0.98 wanted (README "Anonymization").
func TestDevSet(t *testing.T) {
	net := newNet(t)
	hand := loadPhotos(t)
	var none []photo
	for _, f := range photos.NoFaces() {
		none = append(none, decode(t, f))
	}
	dev := devSet(t, hand)
	p := builtin.DefaultParams
	type config struct {
		name string
		d    *blazeface.Detector
		thr  float64
		// floors: dev-set recall; whether the hand-boxed faces must all be found
		// and the no-face controls hold at most one false alarm each
		devFloor float64
		strict   bool
	}
	configs := []config{
		{"default", &blazeface.Detector{Net: net, Dense: p.Dense, DenseMin: p.DenseMin, LookFrom: p.LookFrom, Confirm: p.Confirm,
			LookTurns: p.LookTurns, TurnFrom: p.TurnFrom, LookAll: p.LookAll, Veto: vetoNet(t), VetoBelow: p.VetoBelow, LookSure: p.LookSure, VetoSure: p.VetoSure, VetoFree: p.VetoFree}, 0.5, devFloor, true},
		{"without the look at every face and the veto", &blazeface.Detector{Net: net, Dense: p.Dense, DenseMin: p.DenseMin, LookFrom: p.LookFrom, Confirm: p.Confirm,
			LookTurns: p.LookTurns, TurnFrom: p.TurnFrom}, 0.5, devFloor, true},
		{"second look upright only (from 0.4)", &blazeface.Detector{Net: net, Dense: p.Dense, DenseMin: p.DenseMin, LookFrom: 0.4, Confirm: p.Confirm}, 0.5, uprightFloor, true},
		{"dense run without the second look", &blazeface.Detector{Net: net, Dense: p.Dense, DenseMin: p.DenseMin}, 0.5, denseFloor, true},
		{"re-check", &blazeface.Detector{Net: net, Tile: p.Tile, Overlap: p.Overlap}, 0.5, recheckFloor, true},
	}
	if *sweep {
		configs = nil
		for _, thr := range []float64{0.5, 0.6, 0.7} {
			for _, tile := range []int{0, 512, 384, 256} {
				configs = append(configs, config{name: fmt.Sprintf("tiles %d", tile), d: &blazeface.Detector{Net: net, Tile: tile, Overlap: 0.25}, thr: thr})
			}
			for _, dm := range []float64{0.5, 0.6, 0.7, 0.75} {
				configs = append(configs, config{name: fmt.Sprintf("dense 1024 min %.2f", dm), d: &blazeface.Detector{Net: net, Dense: 1024, DenseMin: dm}, thr: thr})
			}
			for _, lf := range []float64{0.3, 0.4, 0.5} {
				for _, c := range []float64{0.5, 0.55, 0.6, 0.7} {
					configs = append(configs, config{name: fmt.Sprintf("dense 1024 min 0.75, look from %.2f confirm %.2f", lf, c),
						d: &blazeface.Detector{Net: net, Dense: 1024, DenseMin: 0.75, LookFrom: lf, Confirm: c}, thr: thr})
				}
			}
		}
	}
	for _, c := range configs {
		s, missed := evaluate(t, c.d, hand, c.thr)
		n, _ := evaluate(t, c.d, none, c.thr)
		v, devMissed := evaluate(t, c.d, dev, c.thr)
		t.Logf("%s, threshold %.2f: hand-boxed %v; no-face controls: %d alarms on %d photos; dev set %v; missed %v", c.name, c.thr, s, n.alarms, len(none), v, devMissed)
		if !c.strict {
			continue
		}
		if s.found < s.faces {
			t.Errorf("%s: hand-boxed: missed %v", c.name, missed)
		}
		if n.alarms > len(none) {
			t.Errorf("%s: no-face controls: %d false alarms on %d photos, at most one each", c.name, n.alarms, len(none))
		}
		if recall := float64(v.found) / float64(v.faces); recall < c.devFloor {
			t.Errorf("%s: dev set recall %.3f fell below %.2f", c.name, recall, c.devFloor)
		}
	}
}

// devFloor is the default detector's dev-set recall today (78/80), rounded down.
// Without the second look the dense run finds 64/80 (denseFloor): DenseMin 0.6
// would find 72/80 but reads a second face into the cat of chelsea.png, and 0.75
// keeps the no-face controls at one false alarm each; the second look confirms the
// faces scoring 0.3–0.75 that are faces. Upright looks from 0.4 only found 75/80
// (uprightFloor): the tilted faces need the looks turned by ±25°. Of the two the
// default misses, one is a 25 px face tilted by about 30° that the dense run does
// not score at all, the other a 55 px face at 0.72 that no look confirms. Before the dense run (whole image and 512 px tiles) recall was
// 0.475, which recheckFloor holds the re-check's detector to. -sweep prints the grid.
const (
	devFloor     = 0.96
	uprightFloor = 0.92
	denseFloor   = 0.78
	recheckFloor = 0.45
)
