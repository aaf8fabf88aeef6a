package photos

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	_ "image/png" // the PNG photos
	"os"
	"path/filepath"
)

// Montage tiles the photo faces/name cols×rows times into one JPEG (quality 90), as
// `montage name -duplicate N -tile CxR` would: a crowd of real faces made at test
// time, the same bytes on every call.
func Montage(name string, cols, rows int) ([]byte, error) {
	f, err := os.Open(filepath.Join(Dir(), "faces", name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tile, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("montage %s: %w", name, err)
	}
	b := tile.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()*cols, b.Dy()*rows))
	for r := range rows {
		for c := range cols {
			at := image.Pt(c*b.Dx(), r*b.Dy())
			draw.Draw(out, image.Rectangle{Min: at, Max: at.Add(b.Size())}, tile, b.Min, draw.Src)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
