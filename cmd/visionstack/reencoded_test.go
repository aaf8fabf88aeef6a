package main

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/testdata/photos"
)

// reencode writes each sample photo with faces four ways — JPEG at quality 92 and 75,
// JPEG at three quarters of the size, PNG — into dir: 36 real photos whose bytes no
// earlier test saw.
func reencode(t *testing.T, dir string) int {
	t.Helper()
	truth, err := photos.FaceTruth()
	must(t, err)
	n := 0
	for _, tc := range truth {
		f, err := os.Open(tc.File)
		must(t, err)
		img, _, err := image.Decode(f)
		f.Close()
		must(t, err)
		b := img.Bounds()
		small := image.NewRGBA(image.Rect(0, 0, b.Dx()*3/4, b.Dy()*3/4))
		for y := range small.Bounds().Dy() {
			for x := range small.Bounds().Dx() {
				small.Set(x, y, img.At(b.Min.X+x*4/3, b.Min.Y+y*4/3))
			}
		}
		base := strings.TrimSuffix(filepath.Base(tc.File), filepath.Ext(tc.File))
		for _, v := range []struct {
			name string
			enc  func(*bytes.Buffer) error
		}{
			{"q92.jpg", func(w *bytes.Buffer) error { return jpeg.Encode(w, img, &jpeg.Options{Quality: 92}) }},
			{"q75.jpg", func(w *bytes.Buffer) error { return jpeg.Encode(w, img, &jpeg.Options{Quality: 75}) }},
			{"small.jpg", func(w *bytes.Buffer) error { return jpeg.Encode(w, small, &jpeg.Options{Quality: 85}) }},
			{"png.png", func(w *bytes.Buffer) error { return png.Encode(w, img) }},
		} {
			var buf bytes.Buffer
			must(t, v.enc(&buf))
			must(t, os.WriteFile(filepath.Join(dir, base+"-"+v.name), buf.Bytes(), 0o644))
			n++
		}
	}
	return n
}

// 36 re-encoded photos, 2 workers, the collector at GOGC=5: none quarantined, none
// failed. Before images pinned their buffers, such runs lost photos now and then.
func TestReencodedPhotosUnderGCPressure(t *testing.T) {
	in := t.TempDir()
	n := reencode(t, in)
	if n != 36 {
		t.Fatalf("%d re-encoded photos, want 36", n)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	out := filepath.Join(t.TempDir(), "out")
	stdout, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--workers", "2", "--no-progress", in)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout)
	}
	if want := fmt.Sprintf("%d images: %d processed, 0 skipped (done before), 0 quarantined, 0 failed;", n, n); !strings.Contains(stdout, want) {
		t.Fatalf("want %q in:\n%s", want, stdout)
	}
}
