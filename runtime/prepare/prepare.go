// Package prepare is the first step: load the original with a byte cap, check its
// header before decoding, orient it, size it for the model, and encode it into a
// payload that fits the model endpoint's request limit, base64 included.
package prepare

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
)

// Image is a prepared image.
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
}

// Preparer runs the step with one project's settings.
type Preparer struct {
	limits       imaging.Limits
	longSide     int
	crop         string
	autoOrient   bool
	payloadLimit int
	quality      int
}

// New builds a Preparer from the project's prepare settings (defaults applied).
func New(c config.Prepare) *Preparer {
	return &Preparer{
		limits: imaging.Limits{MaxBytes: int64(c.MaxBytes), MaxPixels: int64(c.MaxPixels),
			MaxDimension: c.MaxDimension, Formats: c.Formats},
		longSide:     c.Resize.LongSide,
		crop:         c.Resize.Crop,
		autoOrient:   c.AutoOrient == nil || *c.AutoOrient,
		payloadLimit: int(c.PayloadLimit),
		quality:      c.Quality,
	}
}

// Limits are the header-check limits, for callers that check before loading.
func (p *Preparer) Limits() imaging.Limits { return p.limits }

// Load reads an object, refusing one over the byte cap before reading it.
func (p *Preparer) Load(ctx context.Context, b blob.Bucket, name string) ([]byte, blob.Attrs, error) {
	data, attrs, err := blob.ReadAll(ctx, b, name, p.limits.MaxBytes)
	switch {
	case errors.Is(err, blob.ErrTooLarge), errors.Is(err, blob.ErrInvalidName):
		return nil, attrs, fault.Permanent(fmt.Errorf("load %s: %w", name, err))
	case errors.Is(err, blob.ErrNotFound):
		// The object was deleted or replaced after the notification: nothing to do.
		return nil, attrs, fault.Permanent(fmt.Errorf("load %s: %w", name, err))
	case err != nil:
		return nil, attrs, fmt.Errorf("load %s: %w", name, err)
	}
	return data, attrs, nil
}

// Prepare checks, orients, resizes and encodes data. Bad input gives a permanent error.
func (p *Preparer) Prepare(data []byte) (*Image, error) {
	h, err := p.limits.Check(data)
	if err != nil {
		return nil, err
	}
	type fit struct {
		payload []byte
		w, h    int
	}
	f, err := imaging.RetryCorrupt(func() (fit, error) {
		out, w, h, err := imaging.EncodeFit(data, p.longSide, p.crop, p.autoOrient, p.payloadLimit*3/4, p.quality) // base64 grows by 4/3
		return fit{out, w, h}, err
	})
	payload, pw, ph := f.payload, f.w, f.h
	if err != nil {
		return nil, fmt.Errorf("encode model input: %w", err)
	}
	w, hh := h.Width, h.Height
	if p.autoOrient && p.crop == imaging.CropNone && (pw > ph) != (w > hh) && pw != ph && w != hh {
		w, hh = hh, w // the EXIF orientation turned it a quarter
	}
	return &Image{
		Original: data, Header: h, Width: w, Height: hh,
		Payload: payload, MimeType: "image/jpeg", Base64: base64.StdEncoding.EncodeToString(payload),
		PayloadW: pw, PayloadH: ph,
	}, nil
}
