// Package imaging wraps libvips (through govips) for the steps: a header check that
// runs before any decoding, shrink-on-load thumbnails with EXIF orientation, region
// anonymization, grayscale pixels for the face detector, and encoders that fit a
// byte budget. libvips streams and shrinks while decoding, so a 12 MP JPEG never
// becomes a 12 MP bitmap on the way to a 1024 px model input.
package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // header decoders for DecodeConfig
	_ "image/png"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/davidbyttow/govips/v2/vips"
	_ "golang.org/x/image/webp"

	"github.com/visionstack/visionstack/runtime/fault"
)

var startOnce sync.Once

// Init starts libvips once; concurrency ≤ 0 uses one thread per CPU. Later calls
// are no-ops, so call it early (the CLI does) to choose the thread count.
func Init(concurrency int) {
	startOnce.Do(func() {
		limitMallocArenas()
		if concurrency <= 0 {
			concurrency = runtime.GOMAXPROCS(0)
		}
		vips.LoggingSettings(func(domain string, level vips.LogLevel, msg string) {
			// Decode failures come back as errors too; their tile-by-tile warnings are noise.
			if level <= vips.LogLevelCritical {
				slog.Error(msg, "component", "libvips", "domain", domain)
			} else {
				slog.Debug(msg, "component", "libvips", "domain", domain)
			}
		}, vips.LogLevelWarning)
		vips.Startup(&vips.Config{ConcurrencyLevel: concurrency, MaxCacheFiles: 0, MaxCacheMem: 0, MaxCacheSize: 0})
	})
}

// Header is what an image declares before it is decoded.
type Header struct {
	Format string // jpeg, png, webp
	Width  int
	Height int
}

// Limits guard decoding.
type Limits struct {
	MaxBytes     int64
	MaxPixels    int64
	MaxDimension int
	Formats      []string
}

// Errors of the header check; all are wrapped as permanent.
var (
	ErrEmpty      = errors.New("empty file")
	ErrTooLarge   = errors.New("file too large")
	ErrBomb       = errors.New("declared dimensions exceed the limits")
	ErrFormat     = errors.New("format not allowed")
	ErrUnreadable = errors.New("not a readable image")
	ErrCorrupt    = errors.New("image data corrupt or truncated")
)

// Check reads only the header and refuses what must not be decoded: empty or
// oversized files, unknown or disallowed formats, and images whose declared size
// exceeds the per-dimension or pixel caps (int64 maths, so 50000×50000 cannot wrap).
func (l Limits) Check(data []byte) (Header, error) {
	if len(data) == 0 {
		return Header{}, fault.Permanent(ErrEmpty)
	}
	if l.MaxBytes > 0 && int64(len(data)) > l.MaxBytes {
		return Header{}, fault.Permanent(fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), l.MaxBytes))
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Header{}, fault.Permanent(fmt.Errorf("%w: %v", ErrUnreadable, err))
	}
	h := Header{Format: format, Width: cfg.Width, Height: cfg.Height}
	if len(l.Formats) > 0 && !slices.Contains(l.Formats, format) {
		return h, fault.Permanent(fmt.Errorf("%w: %s (allowed: %v)", ErrFormat, format, l.Formats))
	}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d", ErrUnreadable, h.Width, h.Height))
	}
	if l.MaxDimension > 0 && (h.Width > l.MaxDimension || h.Height > l.MaxDimension) {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d, at most %d per side", ErrBomb, h.Width, h.Height, l.MaxDimension))
	}
	if px := int64(h.Width) * int64(h.Height); l.MaxPixels > 0 && px > l.MaxPixels {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d is %d pixels, at most %d", ErrBomb, h.Width, h.Height, px, l.MaxPixels))
	}
	return h, nil
}

// Image is a decoded (lazily, by libvips) image. Close it.
type Image struct{ ref *vips.ImageRef }

// Close frees the image.
func (im *Image) Close() {
	if im != nil && im.ref != nil {
		im.ref.Close()
	}
}

// Width in pixels.
func (im *Image) Width() int { return im.ref.Width() }

// Height in pixels.
func (im *Image) Height() int { return im.ref.Height() }

// Crop modes for Thumbnail.
const (
	CropNone      = "none"
	CropCentre    = "centre"
	CropAttention = "attention"
)

// Thumbnail decodes data to fit longSide (never enlarging), shrinking while it
// decodes. autoOrient applies the EXIF orientation; crop makes a square.
// Decoding errors (truncated or corrupt data) are permanent.
func Thumbnail(data []byte, longSide int, crop string, autoOrient bool) (*Image, error) {
	Init(0)
	interesting := vips.InterestingNone
	w, h := longSide, longSide
	switch crop {
	case CropCentre:
		interesting = vips.InterestingCentre
	case CropAttention:
		interesting = vips.InterestingAttention
	}
	params := vips.NewImportParams()
	params.FailOnError.Set(true)
	if autoOrient {
		ref, err := vips.LoadThumbnailFromBuffer(data, w, h, interesting, vips.SizeDown, params)
		if err != nil {
			return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
		}
		return &Image{ref}, nil
	}
	ref, err := vips.LoadImageFromBuffer(data, params)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	if err := ref.RemoveOrientation(); err != nil {
		ref.Close()
		return nil, err
	}
	if err := ref.ThumbnailWithSize(w, h, interesting, vips.SizeDown); err != nil {
		ref.Close()
		return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	return &Image{ref}, nil
}

// JPEG encodes the image; strip drops EXIF, XMP, IPTC and ICC metadata.
func (im *Image) JPEG(quality int, strip bool) ([]byte, error) {
	if err := im.flatten(); err != nil {
		return nil, err
	}
	p := vips.NewJpegExportParams()
	p.Quality = quality
	p.StripMetadata = strip
	p.Interlace = false
	out, _, err := im.ref.ExportJpeg(p)
	if err != nil {
		// Decoding is lazy: a truncated source fails here, at the first full read.
		return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	return out, nil
}

// EncodeFit decodes data into a longSide thumbnail and encodes it as a stripped JPEG
// of at most limit bytes: first at quality, then at lower qualities, then at smaller
// sizes. Each try decodes afresh, because a shrink-on-load decode is sequential and
// can be encoded once; at model-input sizes a retry is rare and cheap.
func EncodeFit(data []byte, longSide int, crop string, autoOrient bool, limit, quality int) (out []byte, w, h int, err error) {
	q := quality
	for range 16 {
		img, err := Thumbnail(data, longSide, crop, autoOrient)
		if err != nil {
			return nil, 0, 0, err
		}
		out, err = img.JPEG(q, true)
		w, h = img.Width(), img.Height()
		img.Close()
		if err != nil {
			return nil, 0, 0, err
		}
		if len(out) <= limit {
			return out, w, h, nil
		}
		if q > 40 {
			q = max(q-15, 40)
			continue
		}
		// Still too large at quality 40: shrink by the square root of the excess.
		longSide = int(float64(max(w, h)) * math.Sqrt(float64(limit)/float64(len(out))) * 0.95)
		if longSide < 16 {
			break
		}
	}
	return nil, 0, 0, fmt.Errorf("cannot encode under %d bytes", limit)
}

func (im *Image) flatten() error {
	if im.ref.HasAlpha() {
		if err := im.ref.Flatten(&vips.Color{R: 255, G: 255, B: 255}); err != nil {
			return fmt.Errorf("flatten alpha: %w", err)
		}
	}
	return nil
}

// Gray returns 8-bit luminance pixels, row-major, for the face detector.
func (im *Image) Gray() (pix []uint8, width, height int, err error) {
	cp, err := im.ref.Copy()
	if err != nil {
		return nil, 0, 0, err
	}
	defer cp.Close()
	if cp.HasAlpha() {
		if err := cp.Flatten(&vips.Color{R: 255, G: 255, B: 255}); err != nil {
			return nil, 0, 0, err
		}
	}
	if err := cp.ToColorSpace(vips.InterpretationBW); err != nil {
		return nil, 0, 0, fmt.Errorf("grayscale: %w", err)
	}
	if cp.Bands() > 1 {
		if err := cp.ExtractBand(0, 1); err != nil {
			return nil, 0, 0, err
		}
	}
	if cp.BandFormat() != vips.BandFormatUchar {
		if err := cp.Cast(vips.BandFormatUchar); err != nil {
			return nil, 0, 0, err
		}
	}
	raw, err := cp.ToBytes()
	if err != nil {
		return nil, 0, 0, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	w, h := cp.Width(), cp.Height()
	if len(raw) != w*h {
		return nil, 0, 0, fmt.Errorf("grayscale: %d bytes for %dx%d", len(raw), w, h)
	}
	return raw, w, h, nil
}

// Editable decodes data for region edits, fitting longSide (never enlarging).
// Thumbnail's fast shrink-on-load decode is sequential, and region edits need random
// access (cut a region out, paste it back), so the thumbnail is materialised once
// through an uncompressed in-memory TIFF — a copy, not a codec — and reloaded.
func Editable(data []byte, longSide int, autoOrient bool) (*Image, error) {
	img, err := Thumbnail(data, longSide, CropNone, autoOrient)
	if err != nil {
		return nil, err
	}
	p := vips.NewTiffExportParams()
	p.Compression = vips.TiffCompressionNone
	p.Predictor = vips.TiffPredictorNone
	raw, _, err := img.ref.ExportTiff(p)
	img.Close()
	if err != nil {
		// Decoding is lazy: a truncated source fails here, at the first full read.
		return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	ref, err := vips.NewImageFromBuffer(raw)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", vipsErr(err))
	}
	return &Image{ref}, nil
}

// vipsErr drops the Go stack trace govips appends to every libvips error.
func vipsErr(err error) error {
	if err == nil {
		return nil
	}
	msg, _, _ := strings.Cut(err.Error(), "Stack:")
	if msg = strings.TrimSpace(msg); msg == "" {
		msg = "libvips failed without a message"
	}
	return errors.New(msg)
}

// Decode decodes an encoded image as is (no resize), e.g. a model input.
func Decode(data []byte) (*Image, error) {
	Init(0)
	params := vips.NewImportParams()
	params.FailOnError.Set(true)
	ref, err := vips.LoadImageFromBuffer(data, params)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, vipsErr(err)))
	}
	return &Image{ref}, nil
}

// MaxSide is larger than any image the header check lets through; as a thumbnail
// size it means "keep the original size".
const MaxSide = 1 << 20

// RetryCorrupt runs f, and again (up to three times in all, a few milliseconds
// apart) while it fails with ErrCorrupt. libvips 8.14 now and then fails a good JPEG
// when images are decoded in parallel ("images do not match between header and
// load", or no message at all: its error buffer is shared between threads); once
// was seen to fail twice in a row on a loaded machine. A really corrupt file fails
// every time and is quarantined. Retrying here keeps good images out of quarantine
// without waiting for a queue redelivery.
func RetryCorrupt[T any](f func() (T, error)) (T, error) {
	v, err := f()
	for try := 1; try < 3 && err != nil && errors.Is(err, ErrCorrupt); try++ {
		slog.Debug("decode failed; retrying", "err", err, "try", try+1)
		time.Sleep(time.Duration(try*try) * 5 * time.Millisecond)
		v, err = f()
	}
	return v, err
}

// Upscale enlarges an image to width (keeping its aspect) and encodes a JPEG: it makes
// large benchmark inputs out of real photos.
func Upscale(data []byte, width, quality int) ([]byte, error) {
	img, err := Decode(data)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if err := img.ref.Resize(float64(width)/float64(img.Width()), vips.KernelLanczos3); err != nil {
		return nil, vipsErr(err)
	}
	return img.JPEG(quality, false)
}
