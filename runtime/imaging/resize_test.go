package imaging

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/testdata/photos"
)

// The Go shrink agrees with libvips' linear reduce (what Decode used before) to
// within rounding on a real photo, at the near-1 scale of a 12 MP decode and at
// half size; below half size libvips used Lanczos 3, which sharpens edges a tent
// does not, so there only the mean is held. A flat image stays flat to the level.
func TestResizedMatchesLibvips(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	lazy, err := open(data, Header{Format: "jpeg", Width: 1920, Height: 1280}, 1920, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	src, err := lazy.pixels()
	if err != nil {
		t.Fatal(err)
	}
	whole, err := src.image()
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	for _, long := range []int{1855, 960, 700} {
		ref, err := whole.Fit(long, CropNone) // libvips
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.pixels()
		ref.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := src.fit(long)
		if got.w != want.w || got.h != want.h || got.bands != want.bands {
			t.Fatalf("%d px: %dx%dx%d, libvips %dx%dx%d", long, got.w, got.h, got.bands, want.w, want.h, want.bands)
		}
		var sum, worst float64
		for i, v := range got.pix {
			d := math.Abs(float64(v) - float64(want.pix[i]))
			sum += d
			worst = math.Max(worst, d)
		}
		mean := sum / float64(len(got.pix))
		t.Logf("%d px: mean difference %.3f levels, largest %.0f", long, mean, worst)
		if mean > 0.75 || worst > 8 && long >= 960 {
			t.Errorf("%d px: differs from libvips by %.3f levels on average, %.0f at most", long, mean, worst)
		}
	}
	flat := &pixels{pix: make([]byte, 301*203*3), w: 301, h: 203, bands: 3}
	for i := range flat.pix {
		flat.pix[i] = 137
	}
	for _, v := range flat.resized(290, 196).pix {
		if v != 137 {
			t.Fatalf("a flat image shrank to a level of %d, not 137", v)
		}
	}
}
