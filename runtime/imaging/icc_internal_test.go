package imaging

import (
	"testing"

	"github.com/davidbyttow/govips/v2/vips"
)

// libvips' own sRGB profile reads as sRGB, its Display P3 one does not, and broken
// profiles are neither (nor a panic).
func TestICCIsSRGB(t *testing.T) {
	Init(0)
	for profile, want := range map[string]bool{"srgb": true, "p3": false} {
		ref, err := vips.Black(8, 8)
		if err == nil {
			err = ref.ToColorSpace(vips.InterpretationSRGB)
		}
		if err == nil {
			err = ref.TransformICCProfileWithFallback(profile, "srgb")
		}
		if err != nil {
			t.Fatal(err)
		}
		p := ref.GetICCProfile()
		ref.Close()
		if got := iccIsSRGB(p); got != want {
			t.Errorf("%s (%d bytes): sRGB %v, want %v", profile, len(p), got, want)
		}
		for cut := 0; cut < len(p); cut += 7 {
			iccIsSRGB(p[:cut])
		}
	}
}
