package imaging

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/testdata/photos"
)

// FuzzJPEGComplete: the walk over a JPEG's markers never panics or loops, and says
// complete only when an end marker follows the scans; every prefix of a real photo
// short of its end marker is incomplete.
func FuzzJPEGComplete(f *testing.F) {
	photo, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		f.Fatal(err)
	}
	if !jpegComplete(photo) {
		f.Fatal("a whole photo is incomplete")
	}
	for cut := 0; cut < len(photo)-2; cut += 997 {
		if jpegComplete(photo[:cut]) {
			f.Fatalf("the photo cut at %d of %d bytes is complete", cut, len(photo))
		}
	}
	f.Add(photo[:4096])
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0x00, 0xFF, 0xD0, 0xFF, 0xFF, 0xD9})
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		if jpegComplete(data) && !bytes.Contains(data, []byte{0xFF, 0xD9}) {
			t.Fatalf("complete without an end marker: %x", data)
		}
	})
}

// BenchmarkJPEGComplete12MP: the walk's cost on a 12 MP photo, before every decode.
func BenchmarkJPEGComplete12MP(b *testing.B) {
	src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	big, err := Upscale(src, 4240, 90)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(big)))
	for b.Loop() {
		if !jpegComplete(big) {
			b.Fatal("incomplete")
		}
	}
}
