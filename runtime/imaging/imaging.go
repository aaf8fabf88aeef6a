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

	"github.com/davidbyttow/govips/v2/vips"
	_ "golang.org/x/image/webp"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
)

var startOnce sync.Once

// Init starts libvips once, with every loader outside Loaders blocked; concurrency
// ≤ 0 uses one thread per CPU. Later calls are no-ops, so call it early (the CLI
// does) to choose the thread count.
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
		blockLoaders()
		disableOrc()
	})
}

// Header is what an image declares before it is decoded.
type Header struct {
	Format string // jpeg, png, webp
	Width  int
	Height int
	// complete: a JPEG that reaches its end marker (jpegComplete). rescue: one short
	// of it that Go's decoder will check whole (jpegend.go), progressive or not.
	// Check walks the file once for both; decoding reads them from here.
	complete, rescue, progressive bool
	size                          int64 // bytes of the file
}

// BytesPerPixel is what admission control counts a decoded pixel as: the measured
// peak resident memory per pixel of the whole job (12 MP JPEGs, 16 at once;
// bench/RESULTS.md), rounded up.
const BytesPerPixel = 8

// Cost is what decoding the image costs, in pixels of BytesPerPixel: its pixels, and
// for a JPEG the rescue checks with Go's decoder, that decoder's frame as well (a
// YCbCr frame of up to 3 bytes a pixel, and for a progressive file its coefficients,
// 4 bytes a sample of each of 3 components: 15 bytes a pixel, over the frame rounded
// up to whole 16-pixel MCUs), the copy of the file it decodes and its state; a 24 MP progressive
// 4:4:4 file took 343 MB of heap. Admission counts this before anything decodes.
func (h Header) Cost() int64 {
	px := int64(h.Width) * int64(h.Height)
	if !h.rescue {
		return px
	}
	perPixel := int64(3)
	if h.progressive {
		perPixel = 15
	}
	mcu := func(n int) int64 { return int64((n + 15) / 16 * 16) }
	const state = 64 << 10 // the decoder's tables and buffers
	extra := mcu(h.Width)*mcu(h.Height)*perPixel + h.size + state
	return px + (extra+BytesPerPixel-1)/BytesPerPixel
}

// Limits guard decoding.
type Limits struct {
	MaxBytes     int64
	MaxPixels    int64
	MaxDimension int
	Formats      []string
}

// LimitsFor are the limits of a project's prepare step (defaults applied).
func LimitsFor(c config.Prepare) Limits {
	return Limits{MaxBytes: int64(c.MaxBytes), MaxPixels: int64(c.MaxPixels), MaxDimension: c.MaxDimension, Formats: c.Formats}
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
		return Header{}, fault.Permanent(fmt.Errorf("%w: %d bytes, the limit is %d (pipeline.prepare.maxBytes; raise it to accept larger files)", ErrTooLarge, len(data), l.MaxBytes))
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		// A photo format the header check cannot read is named, so an iPhone's HEIC
		// is not reported as a broken file.
		if other := otherFormat(data); other != "" {
			return Header{Format: other}, fault.Permanent(fmt.Errorf("%w: %s (allowed: %v; convert it to one of those first)", ErrFormat, other, l.allowed()))
		}
	}
	if err != nil {
		return Header{}, fault.Permanent(fmt.Errorf("%w: %v", ErrUnreadable, err))
	}
	h := Header{Format: format, Width: cfg.Width, Height: cfg.Height, size: int64(len(data))}
	if len(l.Formats) > 0 && !slices.Contains(l.Formats, format) {
		return h, fault.Permanent(fmt.Errorf("%w: %s (allowed: %v)", ErrFormat, format, l.Formats))
	}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d", ErrUnreadable, h.Width, h.Height))
	}
	if l.MaxDimension > 0 && (h.Width > l.MaxDimension || h.Height > l.MaxDimension) {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d, at most %d per side (pipeline.prepare.maxDimension)", ErrBomb, h.Width, h.Height, l.MaxDimension))
	}
	if px := int64(h.Width) * int64(h.Height); l.MaxPixels > 0 && px > l.MaxPixels {
		return h, fault.Permanent(fmt.Errorf("%w: %dx%d is %d pixels, at most %d (pipeline.prepare.maxPixels)", ErrBomb, h.Width, h.Height, px, l.MaxPixels))
	}
	if h.Format == "jpeg" {
		h.complete = jpegComplete(data)
		h.rescue = rescued(h)
		h.progressive = h.rescue && jpegProgressive(data)
	}
	return h, nil
}

// allowed is the formats the check lets through, for messages (none set: those of
// a project's default).
func (l Limits) allowed() []string {
	if len(l.Formats) > 0 {
		return l.Formats
	}
	return config.DefaultFormats
}

// otherFormat names, by its signature, an image format the header check has no
// decoder for ("" when it is none of them).
func otherFormat(data []byte) string {
	switch {
	case len(data) >= 12 && string(data[4:8]) == "ftyp": // ISO base media: HEIF, AVIF
		brands := data[8:min(len(data), 64)]
		switch {
		case bytes.HasPrefix(brands, []byte("avi")), bytes.Contains(brands, []byte("avif")):
			return "avif"
		case bytes.HasPrefix(brands, []byte("he")), bytes.HasPrefix(brands, []byte("mif1")), bytes.HasPrefix(brands, []byte("msf1")):
			return "heif"
		}
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "tiff"
	case bytes.HasPrefix(data, []byte{0xFF, 0x0A}), bytes.HasPrefix(data, []byte("\x00\x00\x00\x0cJXL \r\n\x87\n")):
		return "jxl"
	}
	return ""
}

// Image is a libvips image together with every Go buffer it may still read.
//
// govips hands libvips Go byte slices without copying them (load_from_buffer(&buf[0]))
// and libvips reads lazily: pixels are pulled from the buffer only when an output is
// written, possibly long after the ImageRef that held the slice was closed. A buffer
// the collector frees while an image still reads it turns a good photo into "libpng
// read error", "failed to write image to memory" or no message at all, now and then.
// So the rule lives here: an Image pins every buffer its pixels may come from — its
// own source and that of every image it was derived from — until Close. Region edits
// happen on pixels in Go memory (pixels.go), never as pasted libvips images.
// Callers never see an ImageRef.
type Image struct {
	ref  *vips.ImageRef
	pins [][]byte
}

// fromBuffer loads buf with load and pins it to the image.
func fromBuffer(buf []byte, load func([]byte) (*vips.ImageRef, error)) (*Image, error) {
	ref, err := load(buf)
	if err != nil {
		return nil, err
	}
	return &Image{ref: ref, pins: [][]byte{buf}}, nil
}

// derive wraps ref, an image computed from im, with im's pins.
func (im *Image) derive(ref *vips.ImageRef) *Image {
	return &Image{ref: ref, pins: slices.Clone(im.pins)}
}

// Close frees the image and unpins its buffers.
func (im *Image) Close() {
	if im != nil && im.ref != nil {
		im.ref.Close()
		im.ref = nil
		im.pins = nil
	}
}

// Width in pixels.
func (im *Image) Width() int { return im.ref.Width() }

// Height in pixels.
func (im *Image) Height() int { return im.ref.Height() }

// Crop modes for thumbnails.
const (
	CropNone      = "none"
	CropCentre    = "centre"
	CropAttention = "attention"
)

func interesting(crop string) vips.Interesting {
	switch crop {
	case CropCentre:
		return vips.InterestingCentre
	case CropAttention:
		return vips.InterestingAttention
	}
	return vips.InterestingNone
}

// corrupt says what a libvips failure while decoding the image's own bytes means:
// a bad image (permanent: recorded and quarantined, no retry can fix it) only when
// the decoder said so in words known to be its verdict on the data (badImage);
// anything else — out of memory, a thread or temporary file that could not be made,
// a message lost to another thread (libvips keeps one error buffer for all) — is the
// machine's trouble, and the job is retried.
func corrupt(err error) error {
	if errors.Is(err, ErrCorrupt) { // already said
		return err
	}
	err = vipsErr(err)
	msg := err.Error()
	for _, v := range badImage {
		if strings.Contains(msg, v) {
			return fault.Permanent(fmt.Errorf("%w: %v", ErrCorrupt, err))
		}
	}
	return fmt.Errorf("decode failed, not for a reason known to be the image's (retried): %w", err)
}

// badImage are the decoders' verdicts on their input, as libjpeg-turbo, libpng and
// libwebp word them through libvips 8.14 (collected from truncated, bit-flipped and
// zeroed photos of each format: TestDecoderVerdictsAreKnown). A machine failure
// shares none of them: libjpeg's "Insufficient memory" is not "Corrupt JPEG data".
var badImage = []string{
	"VipsJpeg: Corrupt JPEG data", "VipsJpeg: Premature end of", "VipsJpeg: Bogus",
	"VipsJpeg: Invalid", "VipsJpeg: Unsupported marker", "VipsJpeg: Not a JPEG",
	"VipsJpeg: Huffman table", "VipsJpeg: Quantization table", "VipsJpeg: Unsupported JPEG process",
	"VipsJpeg: Empty", "VipsJpeg: Sampling factors", "VipsJpeg: JPEG datastream contains no image",
	"libpng read error", "webp: unable to parse image", "unable to read pixels",
	"ends before its end marker",
}

// Thumbnail passes data through the gate (l.Check) and opens it to fit longSide
// (never enlarging), shrinking while it decodes; autoOrient applies the EXIF
// orientation, crop makes a square. It is decoded lazily and sequentially: write it
// once (JPEG, Gray). For several reads or region edits, use Decode.
func (l Limits) Thumbnail(data []byte, longSide int, crop string, autoOrient bool) (*Image, Header, error) {
	h, err := l.Check(data)
	if err != nil {
		return nil, h, err
	}
	im, err := thumbnail(data, h, longSide, crop, autoOrient)
	return im, h, err
}

func thumbnail(data []byte, h Header, longSide int, crop string, autoOrient bool) (*Image, error) {
	Init(0)
	in := inputFor(data, h)
	params := vips.NewImportParams()
	params.FailOnError.Set(in.strict)
	if autoOrient {
		im, err := fromBuffer(in.data, func(b []byte) (*vips.ImageRef, error) {
			return vips.LoadThumbnailFromBuffer(b, longSide, longSide, interesting(crop), vips.SizeDown, params)
		})
		if err != nil {
			return nil, in.failed(err)
		}
		if err := im.asStored(); err != nil {
			im.Close()
			return nil, in.failed(err)
		}
		return im, nil
	}
	im, err := fromBuffer(in.data, func(b []byte) (*vips.ImageRef, error) { return loadSequential(b, 1, in.strict) })
	if err != nil {
		return nil, in.failed(err)
	}
	if err := im.ref.RemoveOrientation(); err != nil {
		im.Close()
		return nil, vipsErr(err)
	}
	if err := im.toSRGB(); err != nil { // vips_thumbnail (above) does this itself
		im.Close()
		return nil, in.failed(err)
	}
	if longSide < MaxSide || crop != CropNone {
		if err := im.ref.ThumbnailWithSize(longSide, longSide, interesting(crop), vips.SizeDown); err != nil {
			im.Close()
			return nil, corrupt(err)
		}
	}
	if err := im.asStored(); err != nil {
		im.Close()
		return nil, in.failed(err)
	}
	return im, nil
}

// asStored makes the pixels what a viewer shows of the file: 8 bits, transparency
// composed over white. Every step after the decode — the detector, the anonymizer, the
// outputs — then sees the same pixels; the colour under a transparent pixel (a photo
// hidden under an alpha of 0) never reaches a model or an output.
func (im *Image) asStored() error {
	if err := im.eightBit(); err != nil {
		return err
	}
	return im.flatten()
}

// Decode passes data through the gate (l.Check) and decodes it once, shrinking while
// it decodes to fit longSide (never enlarging), oriented by EXIF when autoOrient, into
// memory that the Image owns: it can then be read any number of times, in any order
// (several encodes, region edits), without going back to data. An error while
// decoding data is permanent (the bytes are broken); the header declared it.
func (l Limits) Decode(data []byte, longSide int, autoOrient bool) (*Image, Header, error) {
	if longSide < 1 {
		return nil, Header{}, fmt.Errorf("decode to a long side of %d px: want at least 1 (MaxSide for the image as it is)", longSide)
	}
	h, err := l.Check(data)
	if err != nil {
		return nil, h, err
	}
	in := inputFor(data, h)
	lazy, err := open(in, h, longSide, autoOrient)
	if err != nil {
		return nil, h, err
	}
	defer lazy.Close()
	im, err := lazy.materialize(longSide)
	if errors.Is(err, ErrCorrupt) {
		err = in.failed(err)
	}
	return im, h, err
}

// open loads data, lazily, for longSide. A JPEG is decoded at the largest DCT-domain
// shrink (1/2, 1/4, 1/8) that keeps at least longSide — a 12 MP photo for a 2048 px
// output decodes at 1/2, the cheapest part of the whole decode — and the little left
// to shrink is done by materialize. Measured on a 12 MP JPEG, one core: 75 ms against
// 140 ms for libvips' thumbnail at the same size.
func open(in input, h Header, longSide int, autoOrient bool) (*Image, error) {
	Init(0)
	params := vips.NewImportParams()
	params.FailOnError.Set(in.strict)
	shrink := 1
	if h.Format == "jpeg" {
		long := max(h.Width, h.Height)
		for shrink < 8 && (long+2*shrink-1)/(2*shrink) >= longSide {
			shrink *= 2
		}
		if shrink > 1 {
			params.JpegShrinkFactor.Set(shrink)
		}
	}
	im, err := fromBuffer(in.data, func(b []byte) (*vips.ImageRef, error) { return loadSequential(b, shrink, in.strict) })
	if err != nil {
		return nil, in.failed(err)
	}
	if autoOrient && im.ref.Orientation() > 1 {
		// Turning reads the decode out of order: decode for random access.
		im.Close()
		im, err = fromBuffer(in.data, func(b []byte) (*vips.ImageRef, error) { return vips.LoadImageFromBuffer(b, params) })
		if err != nil {
			return nil, in.failed(err)
		}
	}
	if autoOrient {
		err = im.ref.AutoRotate()
	} else {
		err = im.ref.RemoveOrientation()
	}
	if err == nil {
		err = im.toSRGB()
	}
	if err == nil {
		err = im.asStored()
	}
	if err != nil {
		im.Close()
		return nil, in.failed(err)
	}
	return im, nil
}

// eightBit converts what every later step expects: 8 bits per sample, sRGB or
// grey. 16-bit PNGs are common (Go's own encoder writes them), CMYK JPEGs exist.
func (im *Image) eightBit() error {
	switch im.ref.Interpretation() {
	case vips.InterpretationRGB16, vips.InterpretationCMYK:
		if err := im.ref.ToColorSpace(vips.InterpretationSRGB); err != nil {
			return err
		}
	case vips.InterpretationGrey16:
		if err := im.ref.ToColorSpace(vips.InterpretationBW); err != nil {
			return err
		}
	}
	if im.ref.BandFormat() != vips.BandFormatUchar {
		return im.ref.Cast(vips.BandFormatUchar)
	}
	return nil
}

// fit shrinks the image in place so that its long side is at most longSide. libvips
// widens the kernel by the reduction, so a linear kernel is a tent filter over 2×
// the reduction: enough for up to half the size (what remains after a shrink-on-load,
// the model input from a 2048 px decode), at a third of Lanczos 3's cost; Lanczos 3
// for more.
func (im *Image) fit(longSide int) error {
	w, h := im.Width(), im.Height()
	long := max(w, h)
	if long <= longSide {
		return nil
	}
	kernel := vips.KernelLanczos3
	if float64(longSide)/float64(long) >= 0.5 {
		kernel = vips.KernelLinear
	}
	tw, th := fitSize(w, h, longSide)
	return im.ref.ResizeWithVScale(float64(tw)/float64(w), float64(th)/float64(h), kernel)
}

// fitSize is the exact size of a w×h image fitted to longSide (at most its own): the
// long side becomes longSide, the short side keeps the aspect (at least a pixel).
func fitSize(w, h, longSide int) (int, int) {
	scale := float64(longSide) / float64(max(w, h))
	if h > w {
		return max(1, int(math.Round(float64(w)*scale))), longSide
	}
	return longSide, max(1, int(math.Round(float64(h)*scale)))
}

// materialize decodes the lazy image into Go memory, shrinks it there to longSide
// (resized: libvips' reduce took 120 ms of a 12 MP job's 190 ms decode to 2048 px,
// resized 65 ms; at exactly half size, as Fit does for the model input, libvips'
// reduce is the faster, so Fit keeps it), and loads the pixels back as an image of
// their own. The lazy decode happens here, so a failure here is the source's fault.
func (im *Image) materialize(longSide int) (*Image, error) {
	p, err := im.pixels()
	if err != nil {
		return nil, corrupt(err)
	}
	if q := p.fit(longSide); q != p {
		p.release() // the shrunk copy is what goes on
		p = q
	}
	out, err := p.image()
	if err != nil {
		return nil, fmt.Errorf("reload decoded pixels: %w", err)
	}
	return out, nil
}

// fit returns the pixels shrunk so that the long side is at most longSide (p itself
// when it already is), the short side keeping the aspect.
func (p *pixels) fit(longSide int) *pixels {
	if max(p.w, p.h) <= longSide {
		return p
	}
	return p.resized(fitSize(p.w, p.h, longSide))
}

// Fit returns a copy of the image fitted to longSide (never enlarging); crop makes a
// square. The receiver is unchanged.
func (im *Image) Fit(longSide int, crop string) (*Image, error) {
	defer runtime.KeepAlive(im)
	ref, err := im.ref.Copy()
	if err != nil {
		return nil, vipsErr(err)
	}
	out := im.derive(ref)
	if crop != CropNone {
		err = ref.ThumbnailWithSize(longSide, longSide, interesting(crop), vips.SizeDown)
	} else {
		err = out.fit(longSide)
	}
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("fit to %d px: %w", longSide, vipsErr(err))
	}
	return out, nil
}

// JPEG encodes the image; strip drops EXIF, XMP, IPTC and ICC metadata.
func (im *Image) JPEG(quality int, strip bool) ([]byte, error) {
	defer runtime.KeepAlive(im)
	if err := im.flatten(); err != nil {
		return nil, err
	}
	p := vips.NewJpegExportParams()
	p.Quality = quality
	p.StripMetadata = strip
	p.Interlace = false
	out, _, err := im.ref.ExportJpeg(p)
	if err != nil {
		return nil, fmt.Errorf("encode JPEG: %w", vipsErr(err))
	}
	return out, nil
}

// PNG encodes the image losslessly, metadata stripped, alpha flattened as JPEG does.
func (im *Image) PNG() ([]byte, error) {
	defer runtime.KeepAlive(im)
	if err := im.flatten(); err != nil {
		return nil, err
	}
	p := vips.NewPngExportParams()
	p.StripMetadata = true
	p.Compression = 6
	out, _, err := im.ref.ExportPng(p)
	if err != nil {
		return nil, fmt.Errorf("encode PNG: %w", vipsErr(err))
	}
	return out, nil
}

// EncodeFit fits the image to longSide (crop as Fit) and encodes it as a stripped
// JPEG of at most limit bytes: first at quality, then at lower qualities, then at
// smaller sizes. Call it on a decoded (random-access) image.
func (im *Image) EncodeFit(longSide int, crop string, limit, quality int) (out []byte, w, h int, err error) {
	q := quality
	for range 16 {
		fit, err := im.Fit(longSide, crop)
		if err != nil {
			return nil, 0, 0, err
		}
		out, err = fit.JPEG(q, true)
		w, h = fit.Width(), fit.Height()
		fit.Close()
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
	return nil, 0, 0, fault.Permanent(fmt.Errorf("cannot encode under %d bytes", limit))
}

func (im *Image) flatten() error {
	if im.ref.HasAlpha() {
		if err := im.ref.Flatten(&vips.Color{R: 255, G: 255, B: 255}); err != nil {
			return fmt.Errorf("flatten alpha: %w", vipsErr(err))
		}
	}
	return nil
}

// Gray returns 8-bit luminance pixels, row-major, for the face detector.
func (im *Image) Gray() (pix []uint8, width, height int, err error) {
	defer runtime.KeepAlive(im)
	cp, err := im.ref.Copy()
	if err != nil {
		return nil, 0, 0, vipsErr(err)
	}
	defer cp.Close()
	if cp.HasAlpha() {
		if err := cp.Flatten(&vips.Color{R: 255, G: 255, B: 255}); err != nil {
			return nil, 0, 0, vipsErr(err)
		}
	}
	if err := cp.ToColorSpace(vips.InterpretationBW); err != nil {
		return nil, 0, 0, fmt.Errorf("grayscale: %w", vipsErr(err))
	}
	if cp.Bands() > 1 {
		if err := cp.ExtractBand(0, 1); err != nil {
			return nil, 0, 0, vipsErr(err)
		}
	}
	if cp.BandFormat() != vips.BandFormatUchar {
		if err := cp.Cast(vips.BandFormatUchar); err != nil {
			return nil, 0, 0, vipsErr(err)
		}
	}
	raw, err := toBytes(cp)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("grayscale: %w", vipsErr(err))
	}
	w, h := cp.Width(), cp.Height()
	if len(raw) != w*h {
		return nil, 0, 0, fmt.Errorf("grayscale: %d bytes for %dx%d", len(raw), w, h)
	}
	return raw, w, h, nil
}

// vipsErr drops the Go stack trace govips appends to every libvips error. libvips
// keeps one error buffer for all threads, and govips clears it after reading, so
// under concurrency a failure can arrive with another thread's message or none.
func vipsErr(err error) error {
	if err == nil {
		return nil
	}
	msg, _, _ := strings.Cut(err.Error(), "Stack:")
	if msg = strings.TrimSpace(msg); msg == "" {
		msg = "libvips failed without a message (its error buffer is shared between threads; the message may have gone to another)"
	}
	return errors.New(msg)
}

// MaxSide is larger than any image the header check lets through; as a thumbnail
// size it means "keep the original size".
const MaxSide = 1 << 20

// Upscale enlarges an image to width (keeping its aspect) and encodes a JPEG: it makes
// large benchmark inputs out of real photos.
func Upscale(data []byte, width, quality int) ([]byte, error) {
	img, _, err := Limits{}.Thumbnail(data, MaxSide, CropNone, false)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if err := img.ref.Resize(float64(width)/float64(img.Width()), vips.KernelLanczos3); err != nil {
		return nil, vipsErr(err)
	}
	return img.JPEG(quality, false)
}
