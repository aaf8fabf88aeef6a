package blazeface_test

import (
	"testing"

	"github.com/visionstack/visionstack/internal/faults"
	"github.com/visionstack/visionstack/runtime/model/blazeface"
)

// Repeated runs reuse their memory. Without an arena every activation of every
// layer was a fresh mapping the kernel faulted in and zeroed: a dense run over a
// 1024×704 image took 21,350 minor page faults (83 MB), every run, and the kernel a
// quarter to a half of the job's CPU (issue 26). Once the arena holds a run's
// activations and the inputs are recycled, a run of the same size faults in
// 10–50 pages: the bound, 1000 pages (4 MB) a run, is a twentieth of the old count
// and far above what Go's own heap adds.
func TestRunsReuseTheirMemory(t *testing.T) {
	d := &blazeface.Detector{Net: newNet(t), Dense: 1024, DenseMin: 0.75}
	p := loadPhotos(t)[0]
	// The photo, repeated to a 1024×704 image: the size the demo's dense runs have.
	const w, h = 1024, 704
	rgb := make([]uint8, w*h*3)
	for y := range h {
		for x := range w {
			copy(rgb[(y*w+x)*3:(y*w+x)*3+3], p.rgb[((y%p.h)*p.w+x%p.w)*3:])
		}
	}
	run := func() {
		if _, err := d.Detect(rgb, w, h, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	if per := faults.Fewest(run); per > 1000 { // the first runs grow the arena to what a run needs
		t.Errorf("a dense run over %d×%d faulted in %d pages (%d MB) after warming up; want at most 1000: memory is not reused", w, h, per, per*4/1024)
	} else {
		t.Logf("%d minor faults a run", per)
	}
}
