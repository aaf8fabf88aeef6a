package imaging

import (
	"encoding/binary"
	"strings"
)

// Colour profiles. Outputs drop metadata, an embedded ICC profile with it, and every
// viewer then reads the pixels as sRGB. A photo in a wider space — an iPhone's Display
// P3, a camera's Adobe RGB — came out dull and shifted unless its pixels were
// converted first. So a decode converts RGB pixels from an embedded profile that is
// not sRGB to sRGB (the model sees the colours a person does, too).

// toSRGB converts the image from its embedded RGB profile to sRGB, when it has one
// that is not sRGB already.
func (im *Image) toSRGB() error {
	if !im.ref.HasICCProfile() {
		return nil
	}
	p := im.ref.GetICCProfile()
	if len(p) < 20 || string(p[16:20]) != "RGB " || iccIsSRGB(p) {
		return nil // grey and CMYK go through eightBit; sRGB needs nothing
	}
	return im.ref.TransformICCProfile("srgb") // libvips' built-in sRGB profile
}

// iccIsSRGB says whether an ICC profile describes itself as sRGB ("sRGB
// IEC61966-2.1", "sRGB built-in", …): its 'desc' tag, in the v2 text or v4
// multi-language form.
func iccIsSRGB(p []byte) bool {
	be := binary.BigEndian
	if len(p) < 132 {
		return false
	}
	n := int(be.Uint32(p[128:]))
	for i := 0; i < n && 132+12*(i+1) <= len(p); i++ {
		e := p[132+12*i:]
		if string(e[:4]) != "desc" {
			continue
		}
		off, size := int(be.Uint32(e[4:])), int(be.Uint32(e[8:]))
		if off < 0 || size < 12 || off > len(p) || size > len(p)-off {
			return false
		}
		return strings.Contains(iccText(p[off:off+size]), "sRGB")
	}
	return false
}

// iccText reads a profile tag's text: textDescriptionType (ASCII) or the first
// record of multiLocalizedUnicodeType (UTF-16BE, read for its ASCII letters).
func iccText(t []byte) string {
	be := binary.BigEndian
	switch string(t[:4]) {
	case "desc":
		if n := int(be.Uint32(t[8:])); n >= 0 && n <= len(t)-12 {
			return string(t[12 : 12+n])
		}
	case "mluc":
		if len(t) < 28 || be.Uint32(t[8:]) == 0 {
			return ""
		}
		n, off := int(be.Uint32(t[20:])), int(be.Uint32(t[24:]))
		if off < 0 || n < 0 || off > len(t) || n > len(t)-off {
			return ""
		}
		var b strings.Builder
		for i := off + 1; i < off+n; i += 2 {
			b.WriteByte(t[i])
		}
		return b.String()
	}
	return ""
}
