package imaging

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <vips/vips.h>
*/
import "C"

import "unsafe"

// Loaders are the libvips loader classes left usable: the formats the gate can admit
// (jpeg, png, webp, gif, tiff, heif). TIFF is also how decoded pixels are handed
// between steps. Every other loader — SVG, PDF, ImageMagick, FITS, Matlab, raw… — is
// blocked in libvips itself, so a file that slips past the header check still
// cannot reach librsvg, poppler or ImageMagick.
var Loaders = []string{"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp",
	"VipsForeignLoadNsgif", "VipsForeignLoadTiff", "VipsForeignLoadHeif"}

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
