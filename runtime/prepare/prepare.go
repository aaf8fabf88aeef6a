// Package prepare is the first step: load the original with a byte cap, check its
// header before decoding, orient it, size it for the model, and encode it into a
// payload that fits the model endpoint's request limit, base64 included.
package prepare

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
)

// Image is a prepared image. Close it.
type Image struct {
	Original []byte
	Header   imaging.Header // as declared by the file
	Width    int            // oriented original
	Height   int
	Payload  []byte // model input, JPEG
	MimeType string
	Base64   string // of Payload; what REST model APIs take
	PayloadW int
	PayloadH int
	// Decoded holds the pixels, oriented, decoded once at the size later steps asked
	// for (Prepare's keep); Transform starts from it instead of decoding again.
	Decoded *imaging.Image
}

// Close frees the decoded pixels.
func (im *Image) Close() {
	if im != nil {
		im.Decoded.Close()
	}
}

// Preparer runs the step with one project's settings.
type Preparer struct {
	limits       imaging.Limits
	longSide     int
	crop         string
	autoOrient   bool
	payloadLimit int
	quality      int
	// payloadFormat: jpeg (default) or png (lossless, when it fits the limit).
	payloadFormat string
}

// New builds a Preparer from the project's prepare settings (defaults applied).
func New(c config.Prepare) *Preparer {
	return &Preparer{
		limits:        imaging.LimitsFor(c),
		longSide:      c.Resize.LongSide,
		crop:          c.Resize.Crop,
		autoOrient:    c.AutoOrient == nil || *c.AutoOrient,
		payloadLimit:  int(c.PayloadLimit),
		quality:       c.Quality,
		payloadFormat: c.PayloadFormat,
	}
}

// Limits are the header-check limits, for callers that check before loading.
func (p *Preparer) Limits() imaging.Limits { return p.limits }

// Load reads an object, refusing one over the byte cap before reading it.
func (p *Preparer) Load(ctx context.Context, b blob.Bucket, name string) ([]byte, blob.Attrs, error) {
	data, attrs, err := blob.ReadAll(ctx, b, name, p.limits.MaxBytes)
	switch {
	case errors.Is(err, blob.ErrTooLarge):
		return nil, attrs, fault.Permanent(fmt.Errorf("load %s: %w (pipeline.prepare.maxBytes; raise it to accept larger files)", name, err))
	case errors.Is(err, blob.ErrInvalidName):
		return nil, attrs, fault.Permanent(fmt.Errorf("load %s: %w", name, err))
	case errors.Is(err, blob.ErrNotFound):
		// The object was deleted or replaced after the notification: nothing to do.
		return nil, attrs, fault.Permanent(fmt.Errorf("load %s: %w", name, err))
	case err != nil:
		return nil, attrs, fmt.Errorf("load %s: %w", name, err)
	}
	return data, attrs, nil
}

// encode makes the model input: a PNG when the project asks for a lossless payload
// (a model run in-process then sees exactly the pixels it would be trained on) and it
// fits the payload limit, else a JPEG fitted to the limit.
func (p *Preparer) encode(dec *imaging.Image) (payload []byte, w, h int, mime string, err error) {
	if p.payloadFormat == "png" {
		fit, err := dec.Fit(p.longSide, p.crop)
		if err != nil {
			return nil, 0, 0, "", err
		}
		payload, err = fit.PNG()
		w, h = fit.Width(), fit.Height()
		fit.Close()
		if err != nil {
			return nil, 0, 0, "", err
		}
		if int64(len(payload)) <= int64(p.payloadLimit)*3/4 {
			return payload, w, h, "image/png", nil
		}
	}
	payload, w, h, err = dec.EncodeFit(p.longSide, p.crop, p.payloadLimit*3/4, p.quality) // base64 grows by 4/3
	return payload, w, h, "image/jpeg", err
}

// Prepare checks data's header, decodes it once — shrinking while it decodes to the
// larger of the model input and keep, the long side later steps need (0: nothing
// beyond the model input; imaging.MaxSide: full size) — orients it, and derives the
// model input from those pixels. Bad input gives a permanent error.
func (p *Preparer) Prepare(data []byte, keep int) (*Image, error) {
	h, err := p.limits.Check(data)
	if err != nil {
		return nil, err
	}
	long := max(keep, p.longSide)
	if p.crop != imaging.CropNone {
		// A square crop fits the short side to longSide: keep enough for that.
		l, s := max(h.Width, h.Height), min(h.Width, h.Height)
		long = max(keep, int(math.Ceil(float64(p.longSide)*float64(l)/float64(s))))
	}
	dec, _, err := p.limits.Decode(data, min(long, imaging.MaxSide), p.autoOrient)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	payload, pw, ph, mime, err := p.encode(dec)
	if err != nil {
		dec.Close()
		return nil, fmt.Errorf("encode model input: %w", err)
	}
	w, hh := h.Width, h.Height
	if (dec.Width() > dec.Height()) != (w > hh) && dec.Width() != dec.Height() && w != hh {
		w, hh = hh, w // the EXIF orientation turned it a quarter
	}
	return &Image{
		Original: data, Header: h, Width: w, Height: hh,
		Payload: payload, MimeType: mime, Base64: base64.StdEncoding.EncodeToString(payload),
		PayloadW: pw, PayloadH: ph, Decoded: dec,
	}, nil
}
