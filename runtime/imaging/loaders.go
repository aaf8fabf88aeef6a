package imaging

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <vips/vips.h>
#include <vips/vector.h>
*/
import "C"

import (
	"strings"
	"unsafe"
)

// vipsErrorBuffer takes libvips' error buffer (and clears it): what govips leaves
// there when it reports a failure in words of its own ("failed to write image to
// memory"), such as the decoder's verdict on the image.
func vipsErrorBuffer() string {
	s := strings.TrimSpace(C.GoString(C.vips_error_buffer()))
	C.vips_error_clear()
	return s
}

// Loaders are the libvips loader classes left usable: the formats the gate can admit
// (jpeg, png, webp, gif, heif). Every other loader — TIFF (libtiff: decoded pixels
// reach libvips as memory images now, not as TIFFs), SVG, PDF, ImageMagick, FITS,
// Matlab, raw… — is
// blocked in libvips itself, so a file that slips past the header check still
// cannot reach librsvg, poppler or ImageMagick.
var Loaders = []string{"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp",
	"VipsForeignLoadNsgif", "VipsForeignLoadHeif"}

// disableOrc turns off libvips' liborc (run-time compiled SIMD) path for resizes and
// convolutions. Each such operation compiles liborc programs and frees them when it is
// disposed, and liborc 0.4.33 (Debian 12, this image's base) corrupts the C heap when
// threads do that at once: "free(): invalid pointer" in orc_code_free, a segfault,
// or "malloc_consolidate(): unaligned fastbin chunk", within seconds of a load of
// small concurrent jobs (TestManyConcurrentSmallBlurs). libvips' C paths compute the
// same operations, rounding a little differently; libvips itself dropped liborc for
// Highway in 8.15.
func disableOrc() {
	C.vips_vector_set_enabled(C.FALSE)
}

// vectorEnabled reports whether libvips would use liborc.
func vectorEnabled() bool { return C.vips_vector_isenabled() != C.FALSE }

// blockLoaders blocks every loader libvips flags untrusted, then every loader but
// Loaders (a block on a class covers its subclasses; an unblock re-opens one).
func blockLoaders() {
	C.vips_block_untrusted_set(C.TRUE)
	set := func(name string, block bool) {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		state := C.gboolean(C.FALSE)
		if block {
			state = C.TRUE
		}
		C.vips_operation_block_set(cs, state)
	}
	set("VipsForeignLoad", true)
	for _, l := range Loaders {
		set(l, false)
	}
}
