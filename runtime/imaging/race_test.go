package imaging_test

import (
	"bytes"
	"errors"
	"image"
	_ "image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/visionstack/visionstack/internal/gcpressure"
	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

func samples(t *testing.T) [][]byte {
	files, _ := filepath.Glob(filepath.Join(photos.Dir(), "faces", "*.jpg"))
	var datas [][]byte
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		datas = append(datas, d)
	}
	return datas
}

// process is what the pipeline does with one photo: decode once, derive the model
// input, anonymize a grid of regions (each pasted patch is a buffer of its own) and
// encode the output.
func process(data []byte) ([]byte, error) {
	im, _, err := imaging.Limits{}.Decode(data, 2048, true)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if _, _, _, err := im.EncodeFit(1024, imaging.CropNone, 1_000_000, 90); err != nil {
		return nil, err
	}
	var rects []imaging.Rect
	for y := 0; y+64 < im.Height(); y += 200 {
		for x := 0; x+64 < im.Width(); x += 200 {
			rects = append(rects, imaging.Rect{X: x, Y: y, W: 64, H: 64})
		}
	}
	if err := im.Anonymize(rects, imaging.MethodPixelate); err != nil {
		return nil, err
	}
	return im.JPEG(85, true)
}

// The sample photos, each with hundreds of pasted patches, from several goroutines
// while the collector runs constantly: every job succeeds with the same bytes as a
// quiet run. Before images pinned their buffers, pasted patches were freed while
// libvips still read them ("libpng read error", "failed to write image to memory").
func TestConcurrentJobsUnderGCPressure(t *testing.T) {
	datas := samples(t)
	want := make([][]byte, len(datas))
	for i, d := range datas {
		out, err := process(d)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out
	}
	gcpressure.Constant(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2 * len(datas) {
				k := (g + i) % len(datas)
				out, err := process(datas[k])
				if err != nil {
					t.Errorf("goroutine %d photo %d: %v", g, k, err)
				} else if !bytes.Equal(out, want[k]) {
					t.Errorf("goroutine %d photo %d: output differs from a quiet run", g, k)
				}
			}
		})
	}
	wg.Wait()
}

// Only the image's own broken bytes are permanent, and the message is libvips' own.
func TestDecodeErrors(t *testing.T) {
	_, _, err := imaging.Limits{}.Decode(testimg.Truncated(testimg.JPEG(640, 480), 0.5), 2048, true)
	if !errors.Is(err, imaging.ErrCorrupt) || !fault.IsPermanent(err) {
		t.Fatalf("truncated JPEG: %v, want permanent ErrCorrupt", err)
	}
	if strings.Contains(err.Error(), "without a message") || strings.Contains(err.Error(), "Stack:") {
		t.Errorf("truncated JPEG: %q should carry libvips' message, without a Go stack", err)
	}
	t.Logf("truncated JPEG: %v", err)
	// Said once, however many steps the failure passed through.
	_, _, err = imaging.Limits{}.Decode(testimg.Truncated(testimg.PNG(640, 480), 0.5), 2048, true)
	if !errors.Is(err, imaging.ErrCorrupt) || strings.Count(err.Error(), imaging.ErrCorrupt.Error()) != 1 {
		t.Errorf("truncated PNG: %q, want ErrCorrupt said once", err)
	}
	// A closed image cannot be used, and nothing about that is the image's fault.
	im, _, err := imaging.Limits{}.Decode(testimg.JPEG(64, 48), 2048, true)
	if err != nil {
		t.Fatal(err)
	}
	im.Close()
	im.Close() // idempotent
}

// A 16-bit PNG (Go's encoder writes one for a decoded JPEG) is decoded to 8 bits and
// anonymized like any photo; the region edit used to fail on 16-bit samples.
func TestSixteenBitPNG(t *testing.T) {
	f, err := os.Open(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if buf.Bytes()[24] != 16 { // IHDR bit depth
		t.Fatalf("the test PNG has bit depth %d, want 16", buf.Bytes()[24])
	}
	if _, err := process(buf.Bytes()); err != nil {
		t.Fatalf("16-bit PNG: %v", err)
	}
}
