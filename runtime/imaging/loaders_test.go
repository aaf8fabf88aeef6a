package imaging_test

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"testing"

	"github.com/davidbyttow/govips/v2/vips"

	"github.com/visionstack/visionstack/runtime/imaging"
)

// After Init, libvips itself refuses the loaders the gate never admits, even when
// called around the gate (straight through govips): SVG (librsvg), PDF (poppler),
// TIFF (libtiff), ImageMagick, PPM, Matlab… The formats the pipeline reads still load.
func TestUntrustedLoadersBlockedInLibvips(t *testing.T) {
	imaging.Init(0)
	for name, data := range map[string][]byte{
		"svg": []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"><rect width="20000" height="20000"/></svg>`),
		"pdf": []byte("%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/MediaBox[0 0 20000 20000]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"),
		"ppm": []byte("P6\n20000 20000\n255\n"),
	} {
		img, err := vips.NewImageFromBuffer(data)
		if err == nil {
			img.Close()
			t.Errorf("libvips loaded a %s from a buffer: its loader must be blocked", name)
		}
	}

	small := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range small.Pix {
		small.Pix[i] = byte(i)
	}
	var pngBuf, gifBuf bytes.Buffer
	if err := png.Encode(&pngBuf, small); err != nil {
		t.Fatal(err)
	}
	pal := image.NewPaletted(small.Bounds(), color.Palette{color.Black, color.White})
	if err := gif.Encode(&gifBuf, pal, nil); err != nil {
		t.Fatal(err)
	}
	src, err := vips.NewImageFromBuffer(pngBuf.Bytes())
	if err != nil {
		t.Fatalf("png: %v", err)
	}
	defer src.Close()
	jpg, _, err := src.ExportJpeg(vips.NewJpegExportParams())
	if err != nil {
		t.Fatal(err)
	}
	webp, _, err := src.ExportWebp(vips.NewWebpExportParams())
	if err != nil {
		t.Fatal(err)
	}
	tif, _, err := src.ExportTiff(vips.NewTiffExportParams())
	if err != nil {
		t.Fatal(err)
	}
	if img, err := vips.NewImageFromBuffer(tif); err == nil {
		img.Close()
		t.Errorf("libvips loaded a tiff from a buffer: its loader must be blocked")
	}
	for name, data := range map[string][]byte{"png": pngBuf.Bytes(), "gif": gifBuf.Bytes(), "jpeg": jpg, "webp": webp} {
		img, err := vips.NewImageFromBuffer(data)
		if err != nil {
			t.Errorf("%s no longer loads: %v", name, err)
			continue
		}
		img.Close()
	}
}
