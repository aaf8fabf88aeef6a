package imaging

import (
	"errors"
	"testing"

	"github.com/visionstack/visionstack/runtime/fault"
)

// A libvips failure that is not a decoder's verdict on the data is the machine's:
// retried, never a quarantine (the old rule quarantined all but "out of memory").
func TestMachineFailuresAreRetried(t *testing.T) {
	for _, msg := range []string{
		"VipsJpeg: Insufficient memory (case 4)",
		"unable to create thread",
		"vips__file_open_write: unable to open file \"/tmp/vips-0-123.v\" for writing: No space left on device",
		"out of memory",
		"failed to write image to memory: ",
		"",
	} {
		if err := corrupt(errors.New(msg)); fault.IsPermanent(err) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%q: %v, permanent: a good image would be quarantined for the machine's trouble", msg, err)
		}
	}
	for _, msg := range []string{"VipsJpeg: Corrupt JPEG data: bad Huffman code", "vipspng: libpng read error", "webp: unable to parse image"} {
		if err := corrupt(errors.New(msg)); !fault.IsPermanent(err) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%q: %v, want permanent ErrCorrupt", msg, err)
		}
	}
}
