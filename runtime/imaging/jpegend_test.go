package imaging_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/davidbyttow/govips/v2/vips"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

func rgbOf(t *testing.T, data []byte) []byte {
	t.Helper()
	im, _, err := imaging.Limits{}.Decode(data, 2048, true)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	rgb, _, _, err := im.RGB()
	if err != nil {
		t.Fatal(err)
	}
	return rgb
}

// graceHopper is a testdata photo's bytes and the photo opened in libvips.
func graceHopper(t *testing.T) ([]byte, *vips.ImageRef) {
	t.Helper()
	base, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := vips.NewImageFromBuffer(base)
	if err != nil {
		t.Fatal(err)
	}
	return base, ref
}

// scanStart is where the first scan's entropy-coded data begins.
func scanStart(t *testing.T, jpeg []byte) int {
	i := bytes.Index(jpeg, []byte{0xFF, 0xDA})
	if i < 0 {
		t.Fatal("no scan")
	}
	return i + 2 + int(jpeg[i+2])<<8 | int(jpeg[i+3])
}

// JPEGs every viewer shows, which libvips' strict mode (fail on any libjpeg warning)
// quarantined as "corrupt or truncated", built from a real photo at test time: each
// decodes to the photo's very pixels, for the pipeline and for the review page. A
// file cut short anywhere inside its image data, down to the last byte before the
// end marker, is still refused, permanently; so is a progressive one cut inside a
// scan, while one cut between two scans decodes (as a browser shows it).
func TestJPEGsViewersShowAreNotCorrupt(t *testing.T) {
	base, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(base, []byte{0xFF, 0xD9}) {
		t.Fatal("the base photo should end with its end marker")
	}
	want := rgbOf(t, base)
	sos := bytes.Index(base, []byte{0xFF, 0xDA})
	phone := bytes.Clone(base) // spectral selection / approximation byte set in a sequential scan
	phone[sos+5+2*int(base[sos+4])+2] = 0x01
	stray := append(append(bytes.Clone(base[:sos]), 0, 0, 0), base[sos:]...)
	motion := append(bytes.Clone(base), append([]byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"), bytes.Repeat([]byte{0xFF, 0x12}, 5000)...)...)
	for name, data := range map[string][]byte{
		"no end marker":                     base[:len(base)-2],
		"end marker cut in half":            base[:len(base)-1],
		"phone's scan header (Ah/Al not 0)": phone,
		"stray bytes before a marker":       stray,
		"motion photo: video after the end": motion,
	} {
		im, _, err := imaging.Limits{}.Decode(data, 2048, true)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		rgb, _, _, err := im.RGB()
		im.Close()
		if err != nil || !bytes.Equal(rgb, want) {
			t.Errorf("%s: decoded pixels differ from the photo's (%v)", name, err)
		}
		th, _, err := imaging.Limits{}.Thumbnail(data, 128, imaging.CropNone, true)
		if err == nil {
			_, err = th.JPEG(80, true)
			th.Close()
		}
		if err != nil {
			t.Errorf("%s: thumbnail: %v", name, err)
		}
	}
	start := scanStart(t, base)
	cuts := []int{len(base) - 3, len(base) - 4, len(base) - 100}
	for cut := start + 1; cut < len(base)-2; cut += (len(base) - start) / 40 {
		cuts = append(cuts, cut)
	}
	for _, cut := range cuts {
		_, _, err := imaging.Limits{}.Decode(base[:cut], 2048, true)
		if !errors.Is(err, imaging.ErrCorrupt) || !fault.IsPermanent(err) {
			t.Errorf("cut at %d of %d bytes: %v, want a permanent ErrCorrupt", cut, len(base), err)
		}
	}

	ref, err := vips.NewImageFromBuffer(base)
	if err != nil {
		t.Fatal(err)
	}
	prog, _, err := ref.ExportJpeg(&vips.JpegExportParams{Quality: 90, Interlace: true})
	ref.Close()
	if err != nil {
		t.Fatal(err)
	}
	var scans []int
	for i := 0; ; {
		j := bytes.Index(prog[i:], []byte{0xFF, 0xDA})
		if j < 0 {
			break
		}
		scans, i = append(scans, i+j), i+j+2
	}
	if len(scans) < 4 {
		t.Fatalf("%d scans in the progressive JPEG", len(scans))
	}
	if im, _, err := (imaging.Limits{}).Decode(prog[:scans[3]], 2048, true); err != nil {
		t.Errorf("progressive, cut between scans: %v", err)
	} else {
		im.Close()
	}
	for _, cut := range []int{(scans[2] + scans[3]) / 2, scans[3] - 1, len(prog) - 3} {
		if _, _, err := (imaging.Limits{}).Decode(prog[:cut], 2048, true); !errors.Is(err, imaging.ErrCorrupt) {
			t.Errorf("progressive, cut inside a scan at %d of %d: %v, want ErrCorrupt", cut, len(prog), err)
		}
	}
}

// Issue 24 #3: Go's decoder, which checks a JPEG short of its end marker, allocates
// its whole frame (and a progressive file's coefficients) beside the pipeline's pixel
// budget; Header.Cost counts it before anything decodes. Here a progressive 4:4:4
// photo missing its end marker: the Go heap its decode takes stays within what Cost
// adds to the pixels.
func TestRescueIsCountedByAdmission(t *testing.T) {
	_, ref := graceHopper(t)
	if err := ref.Resize(4, vips.KernelLanczos3); err != nil { // ~2 MP: a real photo's data, enlarged
		t.Fatal(err)
	}
	prog, _, err := ref.ExportJpeg(&vips.JpegExportParams{Quality: 90, Interlace: true, SubsampleMode: vips.VipsForeignSubsampleOff})
	ref.Close()
	if err != nil {
		t.Fatal(err)
	}
	unended := prog[:len(prog)-2]
	h, err := imaging.Limits{}.Check(unended)
	if err != nil {
		t.Fatal(err)
	}
	px := int64(h.Width) * int64(h.Height)
	whole, _ := imaging.Limits{}.Check(prog)
	if whole.Cost() != px {
		t.Errorf("a complete JPEG costs %d for %d pixels: only the rescue adds to it", whole.Cost(), px)
	}
	if h.Cost() < px*(imaging.BytesPerPixel+15)/imaging.BytesPerPixel {
		t.Errorf("a progressive JPEG to rescue costs %d for %d pixels: its coefficients are not counted", h.Cost(), px)
	}
	// The Go heap a decode allocates: the rescue's is what the unended file takes
	// beyond the complete one.
	alloc := func(data []byte) int64 {
		var before, after runtime.MemStats
		// Two collections empty the recycled frames (a sync.Pool), so that neither
		// decode gets its frame from the other.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		im, _, err := imaging.Limits{}.Decode(data, 1024, true)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		im.Close()
		return int64(after.TotalAlloc - before.TotalAlloc)
	}
	heap := alloc(unended) - alloc(prog)
	counted := (h.Cost() - px) * imaging.BytesPerPixel
	t.Logf("%dx%d progressive 4:4:4, %d bytes: the rescue allocated %d MB of Go heap; Cost counts %d MB beside the pixels", h.Width, h.Height, len(unended), heap>>20, counted>>20)
	if heap > counted {
		t.Errorf("the rescue allocated %d bytes, more than the %d Cost counts for it", heap, counted)
	}
}
