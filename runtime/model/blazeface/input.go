package blazeface

import "math"

// Window fills dst (n×n×3, the network's input side n) with the square window of side side at (x0, y0) of
// an RGB image (w×h, 3 bytes a pixel), scaled to the model's input and to [-1, 1]:
// each input pixel averages the source pixels it covers when the window shrinks, or
// interpolates between them when it grows. What lies outside the image is grey (0).
func Window(rgb []uint8, w, h int, x0, y0, side float64, dst []float32) {
	size := int(math.Sqrt(float64(len(dst) / 3)))
	fill(rgb, w, h, x0, y0, side/float64(size), dst, size, size)
}

// DenseArea fills a dense input of an area of the image at scale (input pixels per
// image pixel), its sides rounded up to multiples of Stride (grey past the image),
// and returns it with its size.
func DenseArea(rgb []uint8, w, h int, a Area, scale float64) ([]float32, int, int) {
	ow := int(math.Ceil((a.X1-a.X0)*scale/Stride)) * Stride
	oh := int(math.Ceil((a.Y1-a.Y0)*scale/Stride)) * Stride
	dst := getInput(ow * oh * 3)
	fill(rgb, w, h, a.X0, a.Y0, 1/scale, dst, ow, oh)
	return dst, ow, oh
}

// fill fills dst (ow×oh×3) from the image, s image pixels an input pixel from (x0, y0).
func fill(rgb []uint8, w, h int, x0, y0, s float64, dst []float32, ow, oh int) {
	if s == 1 && x0 == math.Trunc(x0) && y0 == math.Trunc(y0) {
		copyScaled(rgb, w, h, int(x0), int(y0), dst, ow, oh)
		return
	}
	resample(rgb, w, h, x0, y0, s, dst, ow, oh)
}

// resample is fill in general: box averages when the input shrinks, bilinear
// interpolation when it grows.
func resample(rgb []uint8, w, h int, x0, y0, s float64, dst []float32, ow, oh int) {
	for oy := range oh {
		for ox := range ow {
			o := (oy*ow + ox) * 3
			if s <= 1 {
				bilinear(rgb, w, h, x0+(float64(ox)+0.5)*s-0.5, y0+(float64(oy)+0.5)*s-0.5, dst[o:o+3])
				continue
			}
			var c [3]float64
			var n float64
			ya, yb := int(math.Floor(y0+float64(oy)*s)), int(math.Floor(y0+float64(oy+1)*s))
			xa, xb := int(math.Floor(x0+float64(ox)*s)), int(math.Floor(x0+float64(ox+1)*s))
			for y := max(ya, 0); y < min(yb, h); y++ {
				for x := max(xa, 0); x < min(xb, w); x++ {
					p := (y*w + x) * 3
					c[0] += float64(rgb[p])
					c[1] += float64(rgb[p+1])
					c[2] += float64(rgb[p+2])
					n++
				}
			}
			// Pixels outside the image count as grey (127.5).
			if all := float64((yb - ya) * (xb - xa)); all > n {
				for k := range c {
					c[k] += 127.5 * (all - n)
				}
				n = all
			}
			if n == 0 {
				dst[o], dst[o+1], dst[o+2] = 0, 0, 0
				continue
			}
			for k := range c {
				dst[o+k] = float32(c[k]/n/127.5 - 1)
			}
		}
	}
}

// copyScaled is fill at one image pixel an input pixel from whole-pixel offsets (the
// dense run at full resolution): the interpolation would weigh each pixel 1, so each
// byte maps straight to [-1, 1]; outside the image is grey (0).
func copyScaled(rgb []uint8, w, h, x0, y0 int, dst []float32, ow, oh int) {
	var lut [256]float32
	for v := range lut {
		lut[v] = float32(float64(v)/127.5 - 1)
	}
	clear(dst)
	for oy := range oh {
		y := y0 + oy
		if y < 0 || y >= h {
			continue
		}
		xa, xb := max(x0, 0), min(x0+ow, w)
		if xa >= xb {
			continue
		}
		src := rgb[(y*w+xa)*3 : (y*w+xb)*3]
		out := dst[(oy*ow+xa-x0)*3:]
		for i, v := range src {
			out[i] = lut[v]
		}
	}
}

// turned fills dst (size×size×3) with the image around (cx, cy), s image pixels an
// input pixel, turned by angle radians (the content turns the other way), by
// bilinear interpolation; outside the image is grey (0).
func turned(rgb []uint8, w, h int, cx, cy, s, angle float64, dst []float32, size int) {
	cos, sin := math.Cos(angle)*s, math.Sin(angle)*s
	half := float64(size) / 2
	for oy := range size {
		for ox := range size {
			dx, dy := float64(ox)+0.5-half, float64(oy)+0.5-half
			o := (oy*size + ox) * 3
			bilinear(rgb, w, h, cx+cos*dx-sin*dy-0.5, cy+sin*dx+cos*dy-0.5, dst[o:o+3])
		}
	}
}

// bilinear sets px (3 floats in [-1, 1]) to the image interpolated at (fx, fy), in
// pixel-centre coordinates; past the image's outer half pixel it is grey (0).
func bilinear(rgb []uint8, w, h int, fx, fy float64, px []float32) {
	if fx < -0.5 || fy < -0.5 || fx > float64(w)-0.5 || fy > float64(h)-0.5 {
		px[0], px[1], px[2] = 0, 0, 0
		return
	}
	xa, ya := int(math.Floor(fx)), int(math.Floor(fy))
	tx, ty := fx-float64(xa), fy-float64(ya)
	var c [3]float64
	for _, q := range [4]struct {
		x, y int
		wt   float64
	}{{xa, ya, (1 - tx) * (1 - ty)}, {xa + 1, ya, tx * (1 - ty)}, {xa, ya + 1, (1 - tx) * ty}, {xa + 1, ya + 1, tx * ty}} {
		x, y := min(max(q.x, 0), w-1), min(max(q.y, 0), h-1)
		p := (y*w + x) * 3
		for k := range c {
			c[k] += q.wt * float64(rgb[p+k])
		}
	}
	for k := range c {
		px[k] = float32(c[k]/127.5 - 1)
	}
}
