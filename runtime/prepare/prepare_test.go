package prepare_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/prepare"
	"github.com/visionstack/visionstack/testdata/photos"
)

func preparer(t testing.TB, mutate func(*config.Prepare)) *prepare.Preparer {
	p := &config.Project{}
	p.ApplyDefaults()
	if mutate != nil {
		mutate(&p.Pipeline.Prepare)
	}
	return prepare.New(p.Pipeline.Prepare)
}

func TestPrepareSamplePhoto(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := preparer(t, nil).Prepare(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if img.Header.Format != "jpeg" || img.Width != 1920 || img.Height != 1280 {
		t.Errorf("header %+v, oriented %dx%d", img.Header, img.Width, img.Height)
	}
	if img.PayloadW != 1024 || img.PayloadH != 683 {
		t.Errorf("payload %dx%d, want 1024x683", img.PayloadW, img.PayloadH)
	}
	raw, err := base64.StdEncoding.DecodeString(img.Base64)
	if err != nil || string(raw) != string(img.Payload) {
		t.Fatal("Base64 does not encode Payload")
	}
	if len(img.Base64) > 1_500_000 {
		t.Errorf("payload %d bytes over the 1.5 MB request cap", len(img.Base64))
	}
}

// The payload must fit the endpoint's cap even for noisy images that JPEG-compress badly.
func TestPayloadFitsLimit(t *testing.T) {
	data := testimg.JPEG(3000, 2000)
	for _, limit := range []config.ByteSize{60_000, 200_000} {
		img, err := preparer(t, func(c *config.Prepare) { c.PayloadLimit = limit; c.Resize.LongSide = 2000 }).Prepare(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(img.Base64); got > int(limit) {
			t.Errorf("limit %d: base64 payload %d bytes", limit, got)
		}
	}
}

func TestOrientationApplied(t *testing.T) {
	// EXIF orientation 6 (rotate 90° CW): a 300x200 JPEG becomes 200x300.
	data := withOrientation(t, testimg.JPEG(300, 200), 6)
	img, err := preparer(t, nil).Prepare(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if img.PayloadW != 200 || img.PayloadH != 300 || img.Width != 200 || img.Height != 300 {
		t.Fatalf("oriented payload %dx%d (original %dx%d), want 200x300", img.PayloadW, img.PayloadH, img.Width, img.Height)
	}
	off := false
	img, err = preparer(t, func(c *config.Prepare) { c.AutoOrient = &off }).Prepare(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if img.PayloadW != 300 {
		t.Fatalf("autoOrient off: payload %dx%d, want 300x200", img.PayloadW, img.PayloadH)
	}
}

// withOrientation inserts a minimal EXIF APP1 segment carrying an orientation tag.
func withOrientation(t *testing.T, jpg []byte, o byte) []byte {
	t.Helper()
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, o, 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	n := len(payload) + 2
	app1 := append([]byte{0xFF, 0xE1, byte(n >> 8), byte(n)}, payload...)
	return append(append(append([]byte{}, jpg[:2]...), app1...), jpg[2:]...)
}

func TestBadInputRejected(t *testing.T) {
	good := testimg.JPEG(64, 48)
	cases := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"zero bytes", nil, imaging.ErrEmpty, "empty"},
		{"not an image", []byte("hello, I am text"), imaging.ErrUnreadable, "not a readable image"},
		{"decompression bomb", testimg.PNGBomb(50000, 50000), imaging.ErrBomb, "50000x50000"},
		{"one huge side", testimg.PNGBomb(100000, 1), imaging.ErrBomb, "at most 16384 per side"},
		{"pixel cap in int64", testimg.PNGBomb(16000, 16000), imaging.ErrBomb, "256000000 pixels"},
		{"truncated jpeg", testimg.Truncated(testimg.JPEG(640, 480), 0.5), imaging.ErrCorrupt, "corrupt or truncated"},
		{"truncated inside the header", testimg.Truncated(good, 0.05), imaging.ErrUnreadable, "not a readable image"},
		{"format not allowed", gifBytes(), imaging.ErrFormat, "gif"},
		// Photo formats the header check has no decoder for are named, not called
		// unreadable: an iPhone's photo is not a broken file.
		{"heic", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), imaging.ErrFormat, "heif (allowed: [jpeg png webp]; convert it"},
		{"avif", []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"), imaging.ErrFormat, "avif"},
		{"avif under a generic brand", []byte("\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00avifmif1miaf"), imaging.ErrFormat, "avif"},
		{"tiff", []byte("II*\x00\x08\x00\x00\x00\x00\x00"), imaging.ErrFormat, "tiff"},
		{"jpeg xl", []byte{0xFF, 0x0A, 0xFA, 0x7F, 0x01}, imaging.ErrFormat, "jxl"},
		{"an mp4 is no image", []byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"), imaging.ErrUnreadable, "not a readable image"},
	}
	p := preparer(t, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.Prepare(c.data, 0)
			if !errors.Is(err, c.want) {
				t.Fatalf("Prepare = %v, want %v", err, c.want)
			}
			if !fault.IsPermanent(err) {
				t.Errorf("%v is not permanent: it would be retried forever", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q lacks %q", err, c.msg)
			}
		})
	}
	// The caps' messages name the setting that would let the file through.
	if _, err := preparer(t, func(c *config.Prepare) { c.MaxBytes = 100 }).Prepare(good, 0); !errors.Is(err, imaging.ErrTooLarge) ||
		!strings.Contains(err.Error(), "(pipeline.prepare.maxBytes; raise it to accept larger files)") {
		t.Fatalf("byte cap: %v", err)
	}
	if _, err := p.Prepare(testimg.PNGBomb(100000, 1), 0); !strings.Contains(err.Error(), "at most 16384 per side (pipeline.prepare.maxDimension)") {
		t.Fatalf("side cap: %v", err)
	}
	if _, err := p.Prepare(testimg.PNGBomb(16000, 16000), 0); !strings.Contains(err.Error(), "(pipeline.prepare.maxPixels)") {
		t.Fatalf("pixel cap: %v", err)
	}
}

func gifBytes() []byte {
	return []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
}

// FuzzHeaderCheck: the header check never panics and never lets through an image
// whose declared size breaks the limits.
func FuzzHeaderCheck(f *testing.F) {
	f.Add(testimg.JPEG(8, 8))
	f.Add(testimg.PNG(8, 8))
	f.Add(testimg.PNGBomb(50000, 50000))
	f.Add(gifBytes())
	f.Add([]byte{})
	lim := imaging.Limits{MaxBytes: 1 << 20, MaxPixels: 1_000_000, MaxDimension: 4096, Formats: []string{"jpeg", "png", "webp"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := lim.Check(data)
		if err != nil {
			if !fault.IsPermanent(err) {
				t.Fatalf("header error not permanent: %v", err)
			}
			return
		}
		if h.Width <= 0 || h.Height <= 0 || h.Width > 4096 || h.Height > 4096 || int64(h.Width)*int64(h.Height) > 1_000_000 {
			t.Fatalf("accepted %+v beyond the limits", h)
		}
	})
}

// Prepare decodes once, at the larger of the model input and what later steps keep,
// never enlarging; a square crop keeps enough for its short side.
func TestPrepareDecodesOnceAtTheLargestSize(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg")) // 1920×1280
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		keep         int
		crop         string
		wantW, wantH int // decoded
		payW, payH   int
	}{
		{"model input only", 0, imaging.CropNone, 1024, 683, 1024, 683},
		{"output at 1600", 1600, imaging.CropNone, 1600, 1067, 1024, 683},
		{"output larger than the photo", 2048, imaging.CropNone, 1920, 1280, 1024, 683},
		{"square crop", 0, imaging.CropCentre, 1536, 1024, 1024, 1024},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := preparer(t, func(p *config.Prepare) { p.Resize.Crop = c.crop }).Prepare(data, c.keep)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Decoded.Width() != c.wantW || img.Decoded.Height() != c.wantH || img.PayloadW != c.payW || img.PayloadH != c.payH {
				t.Errorf("decoded %dx%d, payload %dx%d; want %dx%d and %dx%d", img.Decoded.Width(), img.Decoded.Height(),
					img.PayloadW, img.PayloadH, c.wantW, c.wantH, c.payW, c.payH)
			}
			if img.Width != 1920 || img.Height != 1280 {
				t.Errorf("original reported as %dx%d", img.Width, img.Height)
			}
		})
	}
}
