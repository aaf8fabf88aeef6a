package imaging_test

import (
	"sync"
	"testing"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/imaging"
)

// Every resize and blur used to compile and free liborc programs (libvips' SIMD
// path), and liborc 0.4.33 (Debian 12) corrupts the C heap when threads do that at
// once: "free(): invalid pointer" in orc_code_free, "malloc(): unaligned fastbin
// chunk", a segfault — now and then under load (it failed CI in
// TestConcurrentJobsUnderGCPressure). Tiny Gaussian-blurred regions from several
// goroutines build thousands of such programs: with liborc on, a run of 400 rounds
// aborted the process 4 times in 4, after 10–26 s; TestVectorPathOff pins the fix.
func TestManyConcurrentSmallBlurs(t *testing.T) {
	im, _, err := imaging.Limits{}.Decode(testimg.JPEG(64, 64), 64, true)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	var rects []imaging.Rect
	for i := range 40 {
		rects = append(rects, imaging.Rect{X: i % 40, Y: (i * 7) % 40, W: 8 + i%9, H: 8 + i%5})
	}
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range rounds {
				fit, err := im.Fit(64, imaging.CropNone)
				if err == nil {
					err = fit.Anonymize(rects, imaging.MethodGaussian)
					fit.Close()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
