package imaging

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/internal/faults"
)

// image() hands libvips the samples where they are, for every band count the
// pipeline makes (grey, grey+alpha, RGB, RGBA), and reading them back gives the
// same samples: govips still keeps its VipsImage where fromMemory puts it.
func TestFromMemory(t *testing.T) {
	Init(0)
	const w, h = 37, 23
	for bands := 1; bands <= 4; bands++ {
		p := newPixels(w, h, bands)
		for i := range p.pix {
			p.pix[i] = uint8(i*7 + bands)
		}
		im, err := p.image()
		if err != nil {
			t.Fatal(err)
		}
		if im.Width() != w || im.Height() != h || im.ref.Bands() != bands {
			t.Fatalf("%d bands: the image is %dx%dx%d", bands, im.Width(), im.Height(), im.ref.Bands())
		}
		back, err := im.pixels()
		im.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.pix, p.pix) {
			t.Errorf("%d bands: the samples read back differ", bands)
		}
	}
}

// Handing a frame to libvips copies nothing. Wrapped in an uncompressed TIFF, it went
// through libvips' loader, which for random access first copied the whole frame into
// a fresh mapping of its own: every hand-off of a 2048 px frame (the decode's, the
// anonymized one) faulted in and zeroed its 2,000 pages (8 MB) again, a fifth of the
// whole job's page faults (issue 26); here 2,809 at the fewest of five encodes. Now
// an encode faults in what the JPEG encoder and libvips' threads need (300–400). The
// bound is the frame's own pages, which a copy of the frame alone exceeds.
func TestHandingAFrameToLibvipsCopiesNothing(t *testing.T) {
	skipUnderRace(t)
	Init(0)
	data := readSample(t, "faceapi_sample1.jpg")
	im, _, err := Limits{}.Decode(data, 2048, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := im.pixels()
	im.Close()
	if err != nil {
		t.Fatal(err)
	}
	encode := func() {
		frame, err := p.image()
		if err != nil {
			t.Fatal(err)
		}
		defer frame.Close()
		if _, err := frame.JPEG(85, true); err != nil {
			t.Fatal(err)
		}
	}
	pages := int64(len(p.pix)) / 4096
	if per := faults.Fewest(encode); per > pages {
		t.Errorf("encoding a %dx%d frame faulted in %d pages, the frame has %d: it was copied into fresh memory", p.w, p.h, per, pages)
	} else {
		t.Logf("%d minor faults an encode of a %dx%d frame (%d pages)", per, p.w, p.h, pages)
	}
}

// A decode reads the file once, in order, into the Go frame. Opened by govips'
// loaders (random access), libvips first decoded the whole image into a fresh
// mapping of its own, which the kernel faulted in and zeroed on every job: a 12 MP
// JPEG's decode at half size took 2,200 page faults for that alone; this photo's
// decode took 1,974 at the fewest of five. Now 130–800 (libjpeg's and libvips'
// buffers and threads, glibc's trimming). The bound is the frame's own pages, which
// a copy of the frame alone exceeds. (A photo that EXIF says to turn is still
// decoded for random access: the turn reads out of order. Prepare's orientation
// tests cover it.)
func TestSequentialLoad(t *testing.T) {
	skipUnderRace(t)
	Init(0)
	data := readSample(t, "faceapi_sample1.jpg")
	var w, h int
	decode := func() {
		im, _, err := Limits{}.Decode(data, 2048, true)
		if err != nil {
			t.Fatal(err)
		}
		w, h = im.Width(), im.Height()
		im.Close()
	}
	per := faults.Fewest(decode)
	pages := int64(w*h*3) / 4096
	if per > pages {
		t.Errorf("decoding a %dx%d JPEG faulted in %d pages, its frame has %d: libvips decoded it into memory of its own first", w, h, per, pages)
	} else {
		t.Logf("%d minor faults a decode of a %dx%d JPEG (%d pages)", per, w, h, pages)
	}
}

// skipUnderRace skips a page-fault count under the race detector (make race); make
// test's plain run counts them.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("the race detector faults in shadow pages for every write: page faults are counted in the run without -race")
	}
}

// readSample is one of the sample photos with faces.
func readSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "photos", "faces", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
