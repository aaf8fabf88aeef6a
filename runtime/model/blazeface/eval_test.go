package blazeface_test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
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

var sweep = flag.Bool("sweep", false, "print recall, false alarms and time for tile sizes and thresholds")

// The default detector (whole image + 512 px tiles, threshold 0.5) on the
// hand-boxed photos, the no-face controls and the harder dev set. The floors are
// what it reaches today; the dev set's is far below the 0.98 wanted (README
// "Anonymization": 20–60 px faces need 256 px tiles, four times the cost).
func TestDevSet(t *testing.T) {
	net := newNet(t)
	hand := loadPhotos(t)
	var none []photo
	for _, f := range photos.NoFaces() {
		none = append(none, decode(t, f))
	}
	dev := devSet(t, hand)
	configs := []struct{ tile int }{{512}}
	thresholds := []float64{0.5}
	if *sweep {
		configs = []struct{ tile int }{{0}, {512}, {384}, {256}}
		thresholds = []float64{0.5, 0.65, 0.75}
	}
	for _, c := range configs {
		for _, thr := range thresholds {
			d := &blazeface.Detector{Net: net, Tile: c.tile, Overlap: 0.25}
			s, missed := evaluate(t, d, hand, thr)
			n, _ := evaluate(t, d, none, thr)
			v, _ := evaluate(t, d, dev, thr)
			t.Logf("tile %d threshold %.2f: hand-boxed %v; no-face controls: %d alarms on %d photos; dev set %v", c.tile, thr, s, n.alarms, len(none), v)
			if *sweep {
				continue
			}
			if s.found < s.faces {
				t.Errorf("hand-boxed: missed %v", missed)
			}
			if n.alarms > len(none) {
				t.Errorf("no-face controls: %d false alarms on %d photos, at most one each", n.alarms, len(none))
			}
			if recall := float64(v.found) / float64(v.faces); recall < devFloor {
				t.Errorf("dev set recall %.3f fell below %.2f", recall, devFloor)
			}
		}
	}
}

// devFloor is the default detector's dev-set recall today (38/80), rounded down.
const devFloor = 0.45
