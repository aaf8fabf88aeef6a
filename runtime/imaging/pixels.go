package imaging

import (
	"fmt"
	"runtime"
	"sync"
)

// pixels are an image's 8-bit samples in Go memory, row-major, bands per pixel
// (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). Region edits happen here, where Go owns
// every byte, instead of in a chain of libvips operations.
type pixels struct {
	pix         []byte
	w, h, bands int
}

// newPixels allocates w×h pixels of bands samples. The samples are not cleared:
// every caller writes each of them.
func newPixels(w, h, bands int) *pixels {
	return &pixels{pix: frameBuf(w * h * bands), w: w, h: h, bands: bands}
}

// frames recycles the decoded frame that Decode shrinks in Go (materialize): 9 MB
// for a 12 MP photo, dead once its shrunk copy exists, and a fresh one every job was
// memory Go's scavenger had returned, which the kernel faulted in and zeroed again.
var frames sync.Pool

// frameBuf returns n bytes, a recycled frame when one of n to 2n bytes is free.
func frameBuf(n int) []byte {
	if b, ok := frames.Get().(*[]byte); ok && cap(*b) >= n && cap(*b) <= 2*n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// release hands p's buffer back for another frame: p must not be used after, and no
// libvips image may read it (image() was never called on p).
func (p *pixels) release() {
	if p.pix != nil {
		b := p.pix
		p.pix = nil
		frames.Put(&b)
	}
}

// pixels copies the image's samples out of libvips.
func (im *Image) pixels() (*pixels, error) {
	defer runtime.KeepAlive(im)
	if err := im.eightBit(); err != nil {
		return nil, vipsErr(err)
	}
	w, h, bands := im.Width(), im.Height(), im.ref.Bands()
	if bands < 1 || bands > 4 || w < 1 || h < 1 {
		return nil, fmt.Errorf("pixels: %dx%dx%d", w, h, bands)
	}
	p := newPixels(w, h, bands)
	if err := writeTo(im.ref, p.pix); err != nil {
		// libvips' reason (where the lazy decode runs, the decoder's verdict) is in its
		// error buffer.
		return nil, fmt.Errorf("%w: %s", vipsErr(err), vipsErrorBuffer())
	}
	return p, nil
}

// crop copies r (inside p) into pixels of its own.
func (p *pixels) crop(r Rect) *pixels {
	out := newPixels(r.W, r.H, p.bands)
	for y := range r.H {
		copy(out.pix[y*r.W*p.bands:(y+1)*r.W*p.bands], p.pix[((r.Y+y)*p.w+r.X)*p.bands:])
	}
	return out
}

// image hands the pixels to libvips as an image of their own, read where they are
// (a memory image: no load, no copy), pinned to the image like every buffer it
// reads. p must not change afterwards. An uncompressed TIFF around the samples (this
// before) went through libvips' loader, which, for random access, first copied the
// whole frame into a fresh mapping of its own: 2,000 page faults a 2048 px frame.
func (p *pixels) image() (*Image, error) {
	ref, err := fromMemory(p.pix, p.w, p.h, p.bands)
	if err != nil {
		return nil, fmt.Errorf("load pixels: %w", err)
	}
	return &Image{ref: ref, pins: [][]byte{p.pix}}, nil
}

// RGB returns 8-bit RGB pixels, row-major, for detectors: alpha flattened on white,
// grey spread to three channels.
func (im *Image) RGB() (pix []uint8, width, height int, err error) {
	defer runtime.KeepAlive(im)
	cp, err := im.Fit(MaxSide, CropNone)
	if err != nil {
		return nil, 0, 0, err
	}
	defer cp.Close()
	if err := cp.flatten(); err != nil {
		return nil, 0, 0, err
	}
	p, err := cp.pixels()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("rgb: %w", err)
	}
	switch p.bands {
	case 3:
		return p.pix, p.w, p.h, nil
	case 1:
		out := make([]uint8, p.w*p.h*3)
		for i, v := range p.pix {
			out[3*i], out[3*i+1], out[3*i+2] = v, v, v
		}
		return out, p.w, p.h, nil
	}
	return nil, 0, 0, fmt.Errorf("rgb: %d bands after flattening", p.bands)
}
