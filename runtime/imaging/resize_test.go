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
	h := Header{Format: "jpeg", Width: 1920, Height: 1280}
	lazy, err := open(inputFor(data, h), h, 1920, false)
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

// The shrink computes, in one pass over rows, exactly the fixed-point sums of its
// taps applied rows first: checked against the sums written out plainly, for
// scales that give one to many taps a sample, on 1, 3 and 4 bands.
func TestResizedIsItsTaps(t *testing.T) {
	for _, c := range []struct{ w, h, tw, th, bands int }{
		{212, 141, 204, 136, 3}, {212, 141, 106, 70, 3}, {97, 61, 30, 20, 1}, {64, 48, 63, 47, 4}, {50, 40, 13, 9, 3},
	} {
		src := &pixels{pix: make([]byte, c.w*c.h*c.bands), w: c.w, h: c.h, bands: c.bands}
		for i := range src.pix {
			src.pix[i] = byte(i*7919 + i/c.w*31)
		}
		got := src.resized(c.tw, c.th)
		hx, hy := taps(c.w, c.tw), taps(c.h, c.th)
		const shift = tapBits - midBits
		for y, ty := range hy {
			for x, tx := range hx {
				for b := range c.bands {
					var acc int32
					for i, wy := range ty.w {
						var row int32
						for k, wx := range tx.w {
							row += wx * int32(src.pix[((ty.start+i)*c.w+tx.start+k)*c.bands+b])
						}
						acc += wy * ((row + 1<<(shift-1)) >> shift)
					}
					want := uint8(min(max((acc+1<<(tapBits+midBits-1))>>(tapBits+midBits), 0), 255))
					if v := got.pix[(y*c.tw+x)*c.bands+b]; v != want {
						t.Fatalf("%dx%d → %dx%d, %d bands: (%d, %d, %d) = %d, the taps give %d", c.w, c.h, c.tw, c.th, c.bands, x, y, b, v, want)
					}
				}
			}
		}
	}
}

func BenchmarkResized12MP(b *testing.B) {
	src := &pixels{pix: make([]byte, 2120*1413*3), w: 2120, h: 1413, bands: 3}
	for i := range src.pix {
		src.pix[i] = byte(i * 7)
	}
	b.ResetTimer()
	for range b.N {
		src.resized(2048, 1365)
	}
}
