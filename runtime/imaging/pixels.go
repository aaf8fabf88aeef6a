package imaging

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	"github.com/davidbyttow/govips/v2/vips"
)

// pixels are an image's 8-bit samples in Go memory, row-major, bands per pixel
// (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). Region edits happen here, where Go owns
// every byte, instead of in a chain of libvips operations.
type pixels struct {
	pix         []byte
	w, h, bands int
	// buf is pix with tiffRoom bytes before it (newPixels makes every pixels): image()
	// writes the TIFF header there and hands libvips the samples without a copy.
	buf []byte
}

// tiffRoom is the room newPixels leaves before the samples for the TIFF header
// (at most 8 + 2 + 12·11 + 4 + 2·4 = 154 bytes).
const tiffRoom = 256

// newPixels allocates w×h pixels of bands samples, with room for the TIFF header.
// The samples are not cleared: every caller writes each of them.
func newPixels(w, h, bands int) *pixels {
	buf := frameBuf(tiffRoom + w*h*bands)
	return &pixels{pix: buf[tiffRoom:], w: w, h: h, bands: bands, buf: buf}
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
	if p.buf != nil {
		b := p.buf
		p.buf, p.pix = nil, nil
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

// image loads the pixels into libvips as an image of their own: an uncompressed
// TIFF around them (a header, not a codec; TIFF is among the allowed loaders),
// pinned to the image like every buffer it reads. The image reads p's samples where
// they are: p must not change afterwards.
func (p *pixels) image() (*Image, error) {
	im, err := fromBuffer(p.tiff(), vips.NewImageFromBuffer)
	if err != nil {
		return nil, fmt.Errorf("load pixels: %w", vipsErr(err))
	}
	return im, nil
}

// tiff wraps the samples in a little-endian, single-strip, uncompressed TIFF in p's
// own buffer: the header goes in the room newPixels left before the samples.
func (p *pixels) tiff() []byte {
	const (
		short = 3
		long  = 4
	)
	type entry struct {
		tag, typ uint16
		count    uint32
		value    uint32
	}
	photometric := uint32(1) // BlackIsZero
	if p.bands >= 3 {
		photometric = 2 // RGB
	}
	entries := []entry{
		{256, long, 1, uint32(p.w)},
		{257, long, 1, uint32(p.h)},
		{258, short, uint32(p.bands), 8}, // BitsPerSample: inline for ≤ 2 bands, else patched below
		{259, short, 1, 1},               // no compression
		{262, short, 1, photometric},
		{273, long, 1, 0}, // StripOffsets: patched below
		{277, short, 1, uint32(p.bands)},
		{278, long, 1, uint32(p.h)},
		{279, long, 1, uint32(len(p.pix))},
		{284, short, 1, 1}, // chunky
	}
	if p.bands == 2 || p.bands == 4 {
		entries = append(entries, entry{338, short, 1, 2}) // unassociated alpha
	}
	ifd := 8
	extra := ifd + 2 + 12*len(entries) + 4 // BitsPerSample array, when not inline
	const data = tiffRoom
	buf := p.buf
	le := binary.LittleEndian
	clear(buf[:data])
	copy(buf, "II")
	le.PutUint16(buf[2:], 42)
	le.PutUint32(buf[4:], uint32(ifd))
	le.PutUint16(buf[ifd:], uint16(len(entries)))
	for i, e := range entries {
		o := ifd + 2 + 12*i
		switch {
		case e.tag == 258 && p.bands > 2:
			e.value = uint32(extra)
			for b := range p.bands {
				le.PutUint16(buf[extra+2*b:], 8)
			}
		case e.tag == 258:
			le.PutUint16(buf[o+10:], 8) // the second inline short (grey+alpha)
		case e.tag == 273:
			e.value = uint32(data)
		}
		le.PutUint16(buf[o:], e.tag)
		le.PutUint16(buf[o+2:], e.typ)
		le.PutUint32(buf[o+4:], e.count)
		if e.typ == short && e.count == 1 || e.tag == 258 && p.bands <= 2 {
			le.PutUint16(buf[o+8:], uint16(e.value))
		} else {
			le.PutUint32(buf[o+8:], e.value)
		}
	}
	return buf
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
