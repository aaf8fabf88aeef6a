package imaging

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <vips/vips.h>

static size_t vs_image_size(VipsImage *in) { return VIPS_IMAGE_SIZEOF_IMAGE(in); }

// vs_write_to renders in into buf, laid out as in is: libvips' worker threads write
// the pixels there directly. It is vips_image_write_to_memory with the caller's
// buffer instead of one of libvips' own.
static int vs_write_to(VipsImage *in, void *buf, size_t size) {
	VipsImage *out = vips_image_new_from_memory(buf, size, in->Xsize, in->Ysize, in->Bands, in->BandFmt);
	if (out == NULL)
		return -1;
	int r = vips_image_write(in, out);
	g_object_unref(out);
	return r;
}

// vs_from_memory is an image over the caller's samples, read where they are: a
// memory image, random access by nature, with nothing loaded or copied.
static VipsImage *vs_from_memory(void *data, size_t size, int width, int height, int bands) {
	VipsImage *im = vips_image_new_from_memory(data, size, width, height, bands, VIPS_FORMAT_UCHAR);
	if (im != NULL)
		im->Type = bands >= 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W;
	return im;
}

static void vs_unref(VipsImage *im) { g_object_unref(im); }

// vs_load opens buf with whichever loader libvips picks (blocked ones refuse), with
// options such as "[access=sequential,shrink=2]".
static VipsImage *vs_load(void *buf, size_t len, const char *options) {
	return vips_image_new_from_buffer(buf, len, options, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"unsafe"

	"github.com/davidbyttow/govips/v2/vips"
)

// toBytes is govips' ToBytes without its copy: ToBytes has libvips render into a
// buffer libvips allocates (a fresh mapping for a frame, which the kernel faults in
// and zeroes page by page) and then copies that into Go memory. Here libvips renders
// into Go memory, which Go's heap reuses from job to job.
func toBytes(ref *vips.ImageRef) ([]byte, error) {
	defer runtime.KeepAlive(ref)
	img := vipsImage(ref)
	if img == nil {
		return nil, errors.New("no image")
	}
	buf := make([]byte, int(C.vs_image_size(img)))
	return buf, writeTo(ref, buf)
}

// writeTo renders the image into dst, which must be exactly its size. The Go memory
// is only written during the call, as cgo's rules require.
func writeTo(ref *vips.ImageRef, dst []byte) error {
	defer runtime.KeepAlive(ref)
	img := vipsImage(ref)
	if img == nil {
		return errors.New("no image")
	}
	size := C.vs_image_size(img)
	if size == 0 || int(size) != len(dst) {
		return fmt.Errorf("an image of %d bytes into %d", int(size), len(dst))
	}
	if C.vs_write_to(img, unsafe.Pointer(&dst[0]), size) != 0 {
		return errors.New("failed to write image to memory")
	}
	return nil
}

// vipsImage is the VipsImage a govips ImageRef wraps. govips keeps it unexported
// and offers only the copying ToBytes; TestToBytesMatchesGovips fails if a govips
// release renames the field or changes its type.
func vipsImage(ref *vips.ImageRef) *C.VipsImage {
	if slot := imageSlot(ref); slot != nil {
		return (*C.VipsImage)(*slot)
	}
	return nil
}

// imageSlot is where ref keeps its VipsImage (govips' unexported image field), or
// nil when a govips release has moved it.
func imageSlot(ref *vips.ImageRef) *unsafe.Pointer {
	f := reflect.ValueOf(ref).Elem().FieldByName("image")
	if !f.IsValid() || f.Kind() != reflect.Pointer {
		return nil
	}
	return (*unsafe.Pointer)(unsafe.Pointer(f.UnsafeAddr()))
}

// fromMemory wraps an image over pix (w×h, bands samples a pixel, row-major) in a
// govips ImageRef. libvips reads pix where it is, for as long as the image lives: the
// caller pins it (Image.pins).
func fromMemory(pix []byte, w, h, bands int) (*vips.ImageRef, error) {
	if len(pix) != w*h*bands || len(pix) == 0 {
		return nil, fmt.Errorf("%d bytes for %dx%dx%d", len(pix), w, h, bands)
	}
	img := C.vs_from_memory(unsafe.Pointer(&pix[0]), C.size_t(len(pix)), C.int(w), C.int(h), C.int(bands))
	if img == nil {
		return nil, fmt.Errorf("image from memory: %s", vipsErrorBuffer())
	}
	return adopt(img)
}

// loadSequential opens data for one pass, top to bottom: libvips decodes as the
// pass reads. The loaders govips calls take no access mode, so libvips gives random
// access, and for that first decodes the whole image into a fresh mapping of its own
// (2,200 page faults for a 12 MP JPEG at half size, every job) before anything reads
// it. shrink > 1 is a JPEG's shrink-on-load; failOnError refuses any warning.
func loadSequential(data []byte, shrink int, failOnError bool) (*vips.ImageRef, error) {
	defer runtime.KeepAlive(data)
	if len(data) == 0 {
		return nil, errors.New("no data")
	}
	opts := "[access=sequential"
	if shrink > 1 {
		opts += fmt.Sprintf(",shrink=%d", shrink)
	}
	if failOnError {
		opts += ",fail=true"
	}
	copts := C.CString(opts + "]")
	defer C.free(unsafe.Pointer(copts))
	img := C.vs_load(unsafe.Pointer(&data[0]), C.size_t(len(data)), copts)
	if img == nil {
		return nil, fmt.Errorf("load: %s", vipsErrorBuffer())
	}
	return adopt(img)
}

// adopt wraps img, whose reference it takes, in a govips ImageRef. govips makes
// ImageRefs only from its own loaders and operations: take a 1×1 one (with govips'
// finalizer) and put img in place of its image. TestFromMemory and
// TestSequentialLoad fail if a govips release moves the field.
func adopt(img *C.VipsImage) (*vips.ImageRef, error) {
	ref, err := vips.Black(1, 1)
	if err != nil {
		C.vs_unref(img)
		return nil, err
	}
	slot := imageSlot(ref)
	if slot == nil {
		C.vs_unref(img)
		ref.Close()
		return nil, errors.New("govips' ImageRef has no image field")
	}
	if old := *slot; old != nil {
		C.vs_unref((*C.VipsImage)(old))
	}
	*slot = unsafe.Pointer(img)
	return ref, nil
}
