package imaging

import (
	"bytes"
	"fmt"
	"image/jpeg"

	"github.com/visionstack/visionstack/runtime/fault"
)

// JPEG strictness. libvips' strict mode (fail on any libjpeg warning) is how it
// reports a truncated file — the source runs dry before the end marker — but it also
// refuses photos every viewer shows: phones write sequential JPEGs with non-zero
// spectral-selection bytes in the scan header ("Invalid SOS parameters for
// sequential JPEG", libvips issue 2309), some encoders leave stray bytes before a
// marker, some cameras and encoders leave out the end marker itself. So the stream is
// walked first (jpegComplete): one that reaches its end marker cannot be truncated and
// is decoded tolerantly. One that does not is given the end marker if Go's own
// decoder then decodes it: that one refuses a cut anywhere inside the image data,
// where libvips, strict, let a photo missing its last 100 bytes through once the
// marker was appended (libvips 8.14 here raised no error). Any other
// is decoded strictly, as before, and fails as truncated.

// rescueLimit bounds the images Go's decoder checks: its frame is allocated whole
// (and a progressive file's coefficients: 15 bytes a pixel, 360 MB at 24 MP), which
// Header.Cost counts for admission beside the pixels; this is a rescue for a rare
// file, not a path to plan memory for.
const rescueLimit = 24_000_000

// input is what libvips decodes for an image's bytes.
type input struct {
	data    []byte
	strict  bool // fail on any warning
	unended bool // a JPEG that does not reach its end marker
}

// inputFor says how to decode data with header h (from Check): see above. Other
// formats decode strictly.
func inputFor(data []byte, h Header) input {
	if h.Format != "jpeg" {
		return input{data: data, strict: true}
	}
	if h.complete {
		return input{data: data}
	}
	if h.rescue {
		ended := make([]byte, len(data), len(data)+2)
		copy(ended, data)
		ended = append(ended, 0xFF, 0xD9)
		if _, err := jpeg.Decode(bytes.NewReader(ended)); err == nil {
			return input{data: ended}
		}
	}
	return input{data: data, strict: true, unended: true}
}

// rescued says whether Go's decoder checks a JPEG of header h whole: short of its
// end marker (h.complete, from Check), small enough. Header.Cost counts that
// decoder's memory.
func rescued(h Header) bool {
	return h.Format == "jpeg" && int64(h.Width)*int64(h.Height) <= rescueLimit && !h.complete
}

// jpegProgressive reports whether the first frame header, found by walking the
// marker segments (not by searching bytes: an EXIF thumbnail holds markers of its
// own), is progressive (SOF2, SOF6, SOF10, SOF14).
func jpegProgressive(b []byte) bool {
	for i := 2; i+3 < len(b); {
		if b[i] != 0xFF {
			return false
		}
		m := b[i+1]
		switch {
		case m == 0xFF:
			i++
			continue
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE
		case m == 0xDA || m == 0xD9:
			return false
		}
		i += 2 + (int(b[i+2])<<8 | int(b[i+3]))
	}
	return false
}

// failed is the error for a decode of in that failed with err: corrupt, and for a
// JPEG that does not reach its end marker, truncated.
func (in input) failed(err error) error {
	if in.unended { // libvips' message says only that the write failed
		return fault.Permanent(fmt.Errorf("%w: the JPEG ends before its end marker (truncated)", ErrCorrupt))
	}
	return corrupt(err)
}

// jpegComplete reports whether a JPEG stream reaches its end marker (EOI): marker
// segments by their lengths, each scan's entropy-coded data up to the next marker
// that is not a restart or a stuffed 0xFF. Bytes after the end marker (a phone's
// motion-photo video, a trailer) do not matter.
func jpegComplete(b []byte) bool {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return false
	}
	i := 2
	for i+1 < len(b) {
		if b[i] != 0xFF { // stray bytes before a marker: libjpeg skips them too
			j := bytes.IndexByte(b[i:], 0xFF)
			if j < 0 {
				return false
			}
			i += j
			continue
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD9:
			return true
		case m == 0x01, m >= 0xD0 && m <= 0xD7: // TEM, RSTn: no length
			i += 2
			continue
		}
		if i+3 >= len(b) {
			return false
		}
		i += 2 + (int(b[i+2])<<8 | int(b[i+3]))
		if m != 0xDA {
			continue
		}
		// A scan: entropy-coded data, where 0xFF is followed by 0x00 (stuffed),
		// a restart marker or fill, until the next real marker.
		for {
			if i >= len(b) {
				return false
			}
			j := bytes.IndexByte(b[i:], 0xFF)
			if j < 0 || i+j+1 >= len(b) {
				return false
			}
			i += j
			if n := b[i+1]; n == 0x00 || n >= 0xD0 && n <= 0xD7 {
				i += 2
				continue
			}
			break
		}
	}
	return false
}
