package imaging

import "math"

// Shrinking in Go: libvips' reduce without its liborc path (off, see disableOrc) took
// 120 ms to take a 12 MP JPEG's half-size decode (2120 px) to 2048 px on one core,
// more than the decode; this separable filter does it in a fraction of that.

// tap is one output sample's filter: weights (fixed point, summing to 1<<tapBits)
// over consecutive source samples from start.
type tap struct {
	start int
	w     []int32
}

const tapBits = 14

// taps is the tent (linear) filter from in samples to out (out ≤ in): each output
// sample is the weighted mean of the source samples within 1/scale of its centre, as
// libvips' linear kernel widens with the reduction (so no source sample is skipped).
func taps(in, out int) []tap {
	scale := float64(out) / float64(in)
	r := math.Max(1, 1/scale)
	n := int(2*r) + 2 // the most source samples within r of a centre
	ts := make([]tap, out)
	backing := make([]int32, out*n) // every tap's weights in one allocation
	fw := make([]float64, 0, n)
	for o := range out {
		c := (float64(o)+0.5)/scale - 0.5
		lo, hi := max(int(math.Ceil(c-r)), 0), min(int(math.Floor(c+r)), in-1)
		fw = fw[:0]
		sum := 0.0
		for s := lo; s <= hi; s++ {
			v := math.Max(0, 1-math.Abs(float64(s)-c)/r)
			fw = append(fw, v)
			sum += v
		}
		if sum == 0 { // c sits on a sample: take it
			lo, fw, sum = min(max(int(math.Round(c)), 0), in-1), append(fw[:0], 1), 1
		}
		t := tap{start: lo, w: backing[o*n : o*n+len(fw) : o*n+len(fw)]}
		total, big := int32(0), 0
		for i, v := range fw {
			t.w[i] = int32(math.Round(v / sum * (1 << tapBits)))
			total += t.w[i]
			if t.w[i] > t.w[big] {
				big = i
			}
		}
		t.w[big] += 1<<tapBits - total // the weights sum to exactly one
		ts[o] = t
	}
	return ts
}

// midBits: fractional bits kept between the two passes; the second pass's sums
// (255<<midBits times weights summing to 1<<tapBits) fit an int32.
const midBits = 7

// resized returns the pixels shrunk to tw×th (each at most the source's) with taps'
// filter, rows first. Only the few filtered rows the next output row needs are kept,
// so the extra memory is a handful of rows, not a second frame.
func (p *pixels) resized(tw, th int) *pixels {
	b := p.bands
	hx, hy := taps(p.w, tw), taps(p.h, th)
	k := 0
	for _, t := range hy {
		k = max(k, len(t.w))
	}
	ring := make([][]int32, k)
	held := make([]int, k)
	for i := range ring {
		ring[i] = make([]int32, tw*b)
		held[i] = -1
	}
	row := func(sy int) []int32 {
		slot := sy % k
		if held[slot] != sy {
			filterRow(ring[slot], p.pix[sy*p.w*b:(sy+1)*p.w*b], hx, b)
			held[slot] = sy
		}
		return ring[slot]
	}
	out := newPixels(tw, th, b)
	acc := make([]int32, tw*b)
	for y, t := range hy {
		clear(acc)
		for i, w := range t.w {
			r := row(t.start + i)
			r = r[:len(acc)]
			for j, v := range r {
				acc[j] += w * v
			}
		}
		o := out.pix[y*tw*b : (y+1)*tw*b]
		o = o[:len(acc)]
		for j, v := range acc {
			v = (v + 1<<(tapBits+midBits-1)) >> (tapBits + midBits)
			o[j] = uint8(min(max(v, 0), 255))
		}
	}
	return out
}

// filterRow filters one source row (b samples a pixel) into dst with the taps, to
// midBits fractional bits.
func filterRow(dst []int32, src []byte, hx []tap, b int) {
	const shift = tapBits - midBits
	const half = 1 << (shift - 1)
	if b == 3 {
		for x, t := range hx {
			s := src[t.start*3 : (t.start+len(t.w))*3]
			var a0, a1, a2 int32
			for i, w := range t.w {
				a0 += w * int32(s[3*i])
				a1 += w * int32(s[3*i+1])
				a2 += w * int32(s[3*i+2])
			}
			d := dst[3*x : 3*x+3]
			d[0], d[1], d[2] = (a0+half)>>shift, (a1+half)>>shift, (a2+half)>>shift
		}
		return
	}
	for x, t := range hx {
		s := src[t.start*b : (t.start+len(t.w))*b]
		for c := range b {
			var a int32
			for i, w := range t.w {
				a += w * int32(s[i*b+c])
			}
			dst[x*b+c] = (a + half) >> shift
		}
	}
}
