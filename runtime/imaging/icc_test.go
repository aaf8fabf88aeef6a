package imaging_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/davidbyttow/govips/v2/vips"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

// meanDiff is the mean absolute difference of two equal-sized RGB buffers.
func meanDiff(a, b []byte) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s / float64(len(a))
}

// A photo in a wide-gamut space (Display P3, an iPhone's; made at test time from an
// sRGB photo with libvips' own P3 profile) decodes to the colours of the sRGB photo:
// outputs drop the profile, and unconverted P3 pixels read as sRGB came out dull. A
// photo tagged sRGB decodes as it is.
func TestWideGamutPhotosKeepTheirColours(t *testing.T) {
	imaging.Init(0)
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "nofaces", "coffee.png")) // saturated reds
	if err != nil {
		t.Fatal(err)
	}
	encode := func(profile string) []byte {
		ref, err := vips.NewImageFromBuffer(data)
		if err != nil {
			t.Fatal(err)
		}
		defer ref.Close()
		if err := ref.TransformICCProfile(profile); err != nil {
			t.Fatal(err)
		}
		out, _, err := ref.ExportJpeg(&vips.JpegExportParams{Quality: 95})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := rgbOf(t, encode("srgb"))
	p3 := encode("p3")
	raw, err := vips.NewImageFromBuffer(p3)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.RemoveICCProfile(); err != nil {
		t.Fatal(err)
	}
	unconverted, _, err := raw.ExportJpeg(&vips.JpegExportParams{Quality: 95})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, dull := meanDiff(rgbOf(t, p3), want), meanDiff(rgbOf(t, unconverted), want)
	t.Logf("P3 photo against the sRGB one: %.2f levels converted, %.2f read as sRGB", got, dull)
	if dull < 3 {
		t.Fatalf("the P3 pixels differ from sRGB by only %.2f: the test photo does not show the problem", dull)
	}
	if got > 2.5 {
		t.Errorf("the P3 photo decodes %.2f levels away from the sRGB one, want ≤ 2.5 (JPEG and 8-bit round trips)", got)
	}
	th, _, err := imaging.Limits{}.Thumbnail(p3, imaging.MaxSide, imaging.CropNone, false)
	if err != nil {
		t.Fatal(err)
	}
	rgb, _, _, err := th.RGB()
	th.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d := meanDiff(rgb, want); d > 2.5 {
		t.Errorf("the model's decode of the P3 photo is %.2f levels away, want ≤ 2.5", d)
	}
}

// BenchmarkDecode12MP: the decode Prepare does (2048 px, oriented) of a 12 MP photo,
// tagged sRGB and Display P3: what converting a wide-gamut photo costs.
func BenchmarkDecode12MP(b *testing.B) {
	imaging.Init(1)
	src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	big, err := imaging.Upscale(src, 4240, 90)
	if err != nil {
		b.Fatal(err)
	}
	for _, profile := range []string{"srgb", "p3"} {
		ref, err := vips.NewImageFromBuffer(big)
		if err != nil {
			b.Fatal(err)
		}
		err = ref.TransformICCProfile(profile)
		var data []byte
		if err == nil {
			data, _, err = ref.ExportJpeg(&vips.JpegExportParams{Quality: 90})
		}
		ref.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(profile, func(b *testing.B) {
			for b.Loop() {
				im, _, err := imaging.Limits{}.Decode(data, 2048, true)
				if err != nil {
					b.Fatal(err)
				}
				im.Close()
			}
		})
	}
}
