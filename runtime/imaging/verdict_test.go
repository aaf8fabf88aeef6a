package imaging_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/davidbyttow/govips/v2/vips"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
)

// Issue 24 #7: "bad image" is decided by an allow-list of the decoders' verdicts, so a
// machine failure is retried instead of quarantining a good photo. The list must
// cover what the decoders really say about broken files: photos of each format cut
// short, bit-flipped and zeroed in places fail as permanent ErrCorrupt (or the
// header check's refusal), never as a retryable error.
func TestDecoderVerdictsAreKnown(t *testing.T) {
	base, ref := graceHopper(t)
	png, _, _ := ref.ExportPng(vips.NewPngExportParams())
	webp, _, _ := ref.ExportWebp(vips.NewWebpExportParams())
	prog, _, _ := ref.ExportJpeg(&vips.JpegExportParams{Quality: 90, Interlace: true})
	ref.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	failed := 0
	for _, src := range []struct {
		name string
		data []byte
	}{{"jpeg", base}, {"png", png}, {"webp", webp}, {"progressive jpeg", prog}, {"grey png", testimg.PNG(300, 200)}} {
		for k := range 120 {
			d := append([]byte{}, src.data...)
			switch k % 3 {
			case 0: // cut short
				d = d[:len(d)/10+rng.IntN(len(d)*9/10)]
			case 1: // bytes flipped
				for range 1 + rng.IntN(20) {
					d[100+rng.IntN(len(d)-100)] = byte(rng.IntN(256))
				}
			case 2: // a run zeroed
				i := 200 + rng.IntN(len(d)-300)
				clear(d[i:min(i+50, len(d))])
			}
			im, _, err := imaging.Limits{}.Decode(d, 1024, true)
			if im != nil {
				im.Close()
			}
			if err == nil {
				continue
			}
			failed++
			if !fault.IsPermanent(err) || !(errors.Is(err, imaging.ErrCorrupt) || errors.Is(err, imaging.ErrUnreadable)) {
				t.Errorf("%s, damaged (%d): %v: not a known verdict on the image, so it would be retried instead of quarantined", src.name, k%3, err)
			}
		}
	}
	if failed < 300 {
		t.Fatalf("only %d of 600 damaged files failed to decode", failed)
	}
}
