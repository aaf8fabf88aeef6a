package imaging

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/davidbyttow/govips/v2/vips"
)

// toBytes reaches into govips for the image it wraps: the same pixels as govips' own
// ToBytes, for each band count the pipeline reads, or a govips release has moved
// what toBytes relies on.
func TestToBytesMatchesGovips(t *testing.T) {
	Init(0)
	data := readSample(t, "grace_hopper.jpg")
	for _, bands := range []int{1, 2, 3, 4} {
		ref, err := vips.NewImageFromBuffer(data)
		if err != nil {
			t.Fatal(err)
		}
		switch bands {
		case 1, 2:
			err = ref.ToColorSpace(vips.InterpretationBW)
		}
		if err == nil && (bands == 2 || bands == 4) {
			err = ref.AddAlpha()
		}
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.ToBytes()
		if err != nil {
			t.Fatal(err)
		}
		got, err := toBytes(ref)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Bands() != bands || len(got) != ref.Width()*ref.Height()*bands || !bytes.Equal(got, want) {
			t.Errorf("%d bands: %d bytes, govips %d; equal %v", ref.Bands(), len(got), len(want), bytes.Equal(got, want))
		}
		ref.Close()
	}
	runtime.GC()
}

// A failed render is an error, not a half-filled buffer: a truncated JPEG decodes
// lazily, inside the write.
func TestToBytesReportsAFailedDecode(t *testing.T) {
	Init(0)
	data := readSample(t, "grace_hopper.jpg")
	p := vips.NewImportParams()
	p.FailOnError.Set(true)
	ref, err := vips.LoadImageFromBuffer(data[:len(data)/2], p)
	if err != nil {
		t.Skip("libvips refused the truncated file at load; nothing to render")
	}
	defer ref.Close()
	if _, err := toBytes(ref); err == nil {
		t.Error("a truncated JPEG rendered without an error")
	}
}
