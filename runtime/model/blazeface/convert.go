package blazeface

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The model ships in the TensorFlow.js graph format (a GraphDef as JSON plus a
// weights file); ONNX Runtime reads ONNX. toONNX translates the few operations a
// BlazeFace graph uses, node for node: the arithmetic is ONNX Runtime's, and
// TestMatchesTensorFlowJS checks its outputs against TensorFlow.js on the same input.

type tfjsModel struct {
	Topology struct {
		Node []tfjsNode `json:"node"`
	} `json:"modelTopology"`
	Manifest []struct {
		Weights []struct {
			Name         string `json:"name"`
			Shape        []int  `json:"shape"`
			Dtype        string `json:"dtype"`
			Quantization *struct {
				Dtype string `json:"dtype"`
			} `json:"quantization"`
		} `json:"weights"`
	} `json:"weightsManifest"`
}

type tfjsNode struct {
	Name  string              `json:"name"`
	Op    string              `json:"op"`
	Input []string            `json:"input"`
	Attr  map[string]tfjsAttr `json:"attr"`
}

type tfjsAttr struct {
	S    string `json:"s"`
	I    string `json:"i"`
	B    bool   `json:"b"`
	List struct {
		I []string `json:"i"`
		S []string `json:"s"`
	} `json:"list"`
}

func (a tfjsAttr) str() string {
	b, _ := base64.StdEncoding.DecodeString(a.S)
	return string(b)
}

func (a tfjsAttr) strs() []string {
	var out []string
	for _, s := range a.List.S {
		b, _ := base64.StdEncoding.DecodeString(s)
		out = append(out, string(b))
	}
	return out
}

func (a tfjsAttr) ints() []int64 {
	var out []int64
	for _, s := range a.List.I {
		var v int64
		fmt.Sscan(s, &v)
		out = append(out, v)
	}
	return out
}

type tensor struct {
	shape []int
	f32   []float32
	i32   []int32
}

// ONNX field numbers (onnx.proto).
const (
	onnxFloat = 1
	onnxInt64 = 7

	attrInt    = 2
	attrString = 3
	attrInts   = 7
)

type graph struct {
	nodes, inits [][]byte
	n            int
}

func (g *graph) name(prefix string) string {
	g.n++
	return fmt.Sprintf("%s_%d", prefix, g.n)
}

type attr struct {
	name string
	i    *int64
	ints []int64
	s    string
}

func intAttr(name string, v int64) attr     { return attr{name: name, i: &v} }
func intsAttr(name string, v ...int64) attr { return attr{name: name, ints: v} }
func stringAttr(name string, v string) attr { return attr{name: name, s: v} }

func (g *graph) node(op string, in []string, out string, attrs ...attr) {
	var b []byte
	for _, s := range in {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, out)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, out)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, op)
	for _, a := range attrs {
		var ab []byte
		ab = protowire.AppendTag(ab, 1, protowire.BytesType)
		ab = protowire.AppendString(ab, a.name)
		switch {
		case a.i != nil:
			ab = protowire.AppendTag(ab, 3, protowire.VarintType)
			ab = protowire.AppendVarint(ab, uint64(*a.i))
			ab = protowire.AppendTag(ab, 20, protowire.VarintType)
			ab = protowire.AppendVarint(ab, attrInt)
		case a.ints != nil:
			for _, v := range a.ints {
				ab = protowire.AppendTag(ab, 8, protowire.VarintType)
				ab = protowire.AppendVarint(ab, uint64(v))
			}
			ab = protowire.AppendTag(ab, 20, protowire.VarintType)
			ab = protowire.AppendVarint(ab, attrInts)
		default:
			ab = protowire.AppendTag(ab, 4, protowire.BytesType)
			ab = protowire.AppendString(ab, a.s)
			ab = protowire.AppendTag(ab, 20, protowire.VarintType)
			ab = protowire.AppendVarint(ab, attrString)
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, ab)
	}
	g.nodes = append(g.nodes, b)
}

// init adds a constant: float32 data, or int64 when f is nil.
func (g *graph) init(name string, dims []int, f []float32, i []int64) {
	var b []byte
	for _, d := range dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	var raw []byte
	if f != nil {
		b = protowire.AppendVarint(b, onnxFloat)
		for _, v := range f {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	} else {
		b = protowire.AppendVarint(b, onnxInt64)
		for _, v := range i {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
	}
	b = protowire.AppendTag(b, 8, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendBytes(b, raw)
	g.inits = append(g.inits, b)
}

func valueInfo(name string, dims []int) []byte {
	var shape []byte
	for i, d := range dims {
		var dim []byte
		if d < 0 { // any size (the batch, the input's height and width): named apart
			dim = protowire.AppendTag(dim, 2, protowire.BytesType)
			dim = protowire.AppendString(dim, fmt.Sprintf("d%d", i))
		} else {
			dim = protowire.AppendTag(dim, 1, protowire.VarintType)
			dim = protowire.AppendVarint(dim, uint64(d))
		}
		shape = protowire.AppendTag(shape, 1, protowire.BytesType)
		shape = protowire.AppendBytes(shape, dim)
	}
	var tt []byte
	tt = protowire.AppendTag(tt, 1, protowire.VarintType)
	tt = protowire.AppendVarint(tt, onnxFloat)
	if dims != nil {
		tt = protowire.AppendTag(tt, 2, protowire.BytesType)
		tt = protowire.AppendBytes(tt, shape)
	}
	var typ []byte
	typ = protowire.AppendTag(typ, 1, protowire.BytesType)
	typ = protowire.AppendBytes(typ, tt)
	var vi []byte
	vi = protowire.AppendTag(vi, 1, protowire.BytesType)
	vi = protowire.AppendString(vi, name)
	vi = protowire.AppendTag(vi, 2, protowire.BytesType)
	vi = protowire.AppendBytes(vi, typ)
	return vi
}

// toONNX translates a TensorFlow.js BlazeFace graph (NHWC) into an ONNX model (NCHW
// inside) with the same input (NHWC, float32) and outputs, named as in the graph.
func toONNX(modelJSON, weights []byte, input string, inputShape []int, outputs []string) ([]byte, error) {
	var m tfjsModel
	if err := json.Unmarshal(modelJSON, &m); err != nil {
		return nil, fmt.Errorf("model json: %w", err)
	}
	consts := map[string]tensor{}
	off := 0
	for _, grp := range m.Manifest {
		for _, w := range grp.Weights {
			n := 1
			for _, d := range w.Shape {
				n *= d
			}
			// Weights stored as float16 (tfjs "quantization") are widened back.
			size := 4
			if q := w.Quantization; q != nil {
				if q.Dtype != "float16" || w.Dtype != "float32" {
					return nil, fmt.Errorf("weights: %s is quantized as %s, only float16 is read", w.Name, q.Dtype)
				}
				size = 2
			}
			if off+size*n > len(weights) {
				return nil, fmt.Errorf("weights: %s runs past the end of the file", w.Name)
			}
			t := tensor{shape: w.Shape}
			for k := range n {
				switch {
				case size == 2:
					t.f32 = append(t.f32, halfToFloat(binary.LittleEndian.Uint16(weights[off+2*k:])))
				case w.Dtype == "float32":
					t.f32 = append(t.f32, math.Float32frombits(binary.LittleEndian.Uint32(weights[off+4*k:])))
				case w.Dtype == "int32":
					t.i32 = append(t.i32, int32(binary.LittleEndian.Uint32(weights[off+4*k:])))
				default:
					return nil, fmt.Errorf("weights: %s has dtype %s", w.Name, w.Dtype)
				}
			}
			off += size * n
			consts[w.Name] = t
		}
	}
	if off != len(weights) {
		return nil, fmt.Errorf("weights: %d bytes read of %d", off, len(weights))
	}
	g := &graph{}
	alias := map[string]string{}  // tfjs tensor → ONNX tensor (NCHW unless at the edges)
	batchDim := map[string]bool{} // Shape and StridedSlice nodes: the batch size
	packs := map[string][]int64{} // Pack nodes: a Reshape's shape
	ref := func(s string) (string, error) {
		s = strings.TrimSuffix(s, ":0")
		if a, ok := alias[s]; ok {
			return a, nil
		}
		return "", fmt.Errorf("input %q is not computed by an earlier node", s)
	}
	weight := func(s string) (tensor, error) {
		t, ok := consts[s]
		if !ok {
			return t, fmt.Errorf("constant %q not in the weights", s)
		}
		return t, nil
	}
	for _, n := range m.Topology.Node {
		switch n.Op {
		case "Const":
			continue
		case "Placeholder":
			if n.Name != input {
				return nil, fmt.Errorf("unexpected input %q", n.Name)
			}
			alias[n.Name] = g.name("nchw")
			g.node("Transpose", []string{input}, alias[n.Name], intsAttr("perm", 0, 3, 1, 2))
			continue
		case "Shape", "StridedSlice":
			// Only ever the batch size, for a Reshape's shape (Pack): 0 there, which
			// ONNX's Reshape reads as "as in the input".
			batchDim[n.Name] = true
			continue
		case "Pack":
			var shape []int64
			for _, in := range n.Input {
				if batchDim[strings.TrimSuffix(in, ":0")] {
					shape = append(shape, 0)
					continue
				}
				c, err := weight(in)
				if err != nil || len(c.i32) != 1 {
					return nil, fmt.Errorf("%s: only a shape of the batch and constants is supported (%s)", n.Name, in)
				}
				shape = append(shape, int64(c.i32[0]))
			}
			packs[n.Name] = shape
			continue
		}
		x, err := ref(n.Input[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		out := g.name(n.Op)
		switch n.Op {
		case "Identity":
			out = x
		case "Relu":
			g.node("Relu", []string{x}, out)
		case "AddV2":
			y, err := ref(n.Input[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n.Name, err)
			}
			g.node("Add", []string{x, y}, out)
		case "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative":
			f, err := weight(n.Input[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n.Name, err)
			}
			kh, kw, ci, co := f.shape[0], f.shape[1], f.shape[2], f.shape[3]
			// TensorFlow's filter is [kh kw ci co] (depthwise: co is the channel
			// multiplier); ONNX wants [co ci kh kw], depthwise [ci·mult 1 kh kw] in groups.
			dims, group := []int{co, ci, kh, kw}, int64(1)
			at := func(c, m, i, j int) int { return ((m*ci+c)*kh+i)*kw + j }
			if n.Op != "_FusedConv2D" {
				dims, group = []int{ci * co, 1, kh, kw}, int64(ci)
				at = func(c, m, i, j int) int { return ((c*co+m)*kh+i)*kw + j }
			}
			w := make([]float32, ci*co*kh*kw)
			for i := range kh {
				for j := range kw {
					for c := range ci {
						for m := range co {
							w[at(c, m, i, j)] = f.f32[((i*kw+j)*ci+c)*co+m]
						}
					}
				}
			}
			wn := g.name("w")
			g.init(wn, dims, w, nil)
			ins := []string{x, wn}
			fused := n.Attr["fused_ops"].strs()
			if n.Op != "DepthwiseConv2dNative" {
				if len(fused) == 0 || fused[0] != "BiasAdd" || len(fused) > 2 || len(fused) == 2 && fused[1] != "Relu" {
					return nil, fmt.Errorf("%s: fused ops %v not supported", n.Name, fused)
				}
				b, err := weight(n.Input[2])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", n.Name, err)
				}
				bn := g.name("b")
				g.init(bn, b.shape, b.f32, nil)
				ins = append(ins, bn)
			}
			s := n.Attr["strides"].ints()
			attrs := []attr{intAttr("group", group), intsAttr("kernel_shape", int64(kh), int64(kw)), intsAttr("strides", s[1], s[2]), padding(n)}
			conv := out
			if len(fused) == 2 {
				conv = g.name("conv")
			}
			g.node("Conv", ins, conv, attrs...)
			if len(fused) == 2 {
				g.node("Relu", []string{conv}, out)
			}
		case "MaxPool":
			k, s := n.Attr["ksize"].ints(), n.Attr["strides"].ints()
			g.node("MaxPool", []string{x}, out, intsAttr("kernel_shape", k[1], k[2]), intsAttr("strides", s[1], s[2]), padding(n))
		case "Pad": // NHWC paddings [4,2] → ONNX pads on NCHW [begins..., ends...]
			p, err := weight(n.Input[1])
			if err != nil || len(p.i32) != 8 {
				return nil, fmt.Errorf("%s: paddings: %v", n.Name, err)
			}
			order := []int{0, 3, 1, 2}
			pads := make([]int64, 8)
			for k, ax := range order {
				pads[k], pads[4+k] = int64(p.i32[2*ax]), int64(p.i32[2*ax+1])
			}
			pn := g.name("pads")
			g.init(pn, []int{8}, nil, pads)
			g.node("Pad", []string{x, pn}, out)
		case "Reshape": // the graph reshapes NHWC: back to NHWC first
			shape, ok := packs[strings.TrimSuffix(n.Input[1], ":0")]
			if !ok {
				p, err := weight(n.Input[1])
				if err != nil {
					return nil, fmt.Errorf("%s: shape: %v", n.Name, err)
				}
				shape = make([]int64, len(p.i32))
				for k, v := range p.i32 {
					shape[k] = int64(v)
				}
				// [1 anchors k] (one image of the graph's size): any batch, any
				// number of anchors, so the graph runs on images of any size.
				if len(shape) == 3 && shape[0] == 1 {
					shape[0], shape[1] = 0, -1
				}
			}
			nhwc := g.name("nhwc")
			g.node("Transpose", []string{x}, nhwc, intsAttr("perm", 0, 2, 3, 1))
			sn := g.name("shape")
			g.init(sn, []int{len(shape)}, nil, shape)
			g.node("Reshape", []string{nhwc, sn}, out)
		case "ConcatV2": // of Reshape outputs, which are NHWC again
			a, err := weight(n.Input[len(n.Input)-1])
			if err != nil || len(a.i32) != 1 {
				return nil, fmt.Errorf("%s: axis: %v", n.Name, err)
			}
			ins := []string{x}
			for _, in := range n.Input[1 : len(n.Input)-1] {
				y, err := ref(in)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", n.Name, err)
				}
				ins = append(ins, y)
			}
			g.node("Concat", ins, out, intAttr("axis", int64(a.i32[0])))
		case "DepthToSpace": // TensorFlow's NHWC order is ONNX's DCR mode
			if f := n.Attr["data_format"].str(); f != "" && f != "NHWC" {
				return nil, fmt.Errorf("%s: data format %s", n.Name, f)
			}
			var bs int64
			fmt.Sscan(n.Attr["block_size"].I, &bs)
			g.node("DepthToSpace", []string{x}, out, intAttr("blocksize", bs), stringAttr("mode", "DCR"))
		case "ResizeBilinear": // to the constant size [h w]: sizes = x's [N C] then [h w]
			if n.Attr["align_corners"].B || !n.Attr["half_pixel_centers"].B {
				return nil, fmt.Errorf("%s: only half-pixel centres are supported", n.Name)
			}
			hw, err := weight(n.Input[1])
			if err != nil || len(hw.i32) != 2 {
				return nil, fmt.Errorf("%s: size: %v", n.Name, err)
			}
			shape, nc, hwn, sizes := g.name("shape"), g.name("nc"), g.name("hw"), g.name("sizes")
			g.node("Shape", []string{x}, shape)
			starts, ends := g.name("start"), g.name("end")
			g.init(starts, []int{1}, nil, []int64{0})
			g.init(ends, []int{1}, nil, []int64{2})
			g.node("Slice", []string{shape, starts, ends}, nc)
			g.init(hwn, []int{2}, nil, []int64{int64(hw.i32[0]), int64(hw.i32[1])})
			g.node("Concat", []string{nc, hwn}, sizes, intAttr("axis", 0))
			g.node("Resize", []string{x, "", "", sizes}, out, stringAttr("mode", "linear"), stringAttr("coordinate_transformation_mode", "half_pixel"))
		default:
			return nil, fmt.Errorf("%s: operation %s not supported", n.Name, n.Op)
		}
		alias[n.Name] = out
	}
	var gb []byte
	for _, n := range g.nodes {
		gb = protowire.AppendTag(gb, 1, protowire.BytesType)
		gb = protowire.AppendBytes(gb, n)
	}
	gb = protowire.AppendTag(gb, 2, protowire.BytesType)
	gb = protowire.AppendString(gb, "blazeface")
	for _, t := range g.inits {
		gb = protowire.AppendTag(gb, 5, protowire.BytesType)
		gb = protowire.AppendBytes(gb, t)
	}
	gb = protowire.AppendTag(gb, 11, protowire.BytesType)
	gb = protowire.AppendBytes(gb, valueInfo(input, inputShape))
	for _, o := range outputs {
		src, err := ref(o)
		if err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
		g.node("Identity", []string{src}, o)
		gb = protowire.AppendTag(gb, 12, protowire.BytesType)
		gb = protowire.AppendBytes(gb, valueInfo(o, nil))
	}
	// The output Identity nodes were appended after the graph's nodes were written.
	for _, n := range g.nodes[len(g.nodes)-len(outputs):] {
		gb = protowire.AppendTag(gb, 1, protowire.BytesType)
		gb = protowire.AppendBytes(gb, n)
	}
	var mb []byte
	mb = protowire.AppendTag(mb, 1, protowire.VarintType) // ir_version
	mb = protowire.AppendVarint(mb, 8)
	mb = protowire.AppendTag(mb, 2, protowire.BytesType)
	mb = protowire.AppendString(mb, "visionstack")
	var opset []byte
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, 13)
	mb = protowire.AppendTag(mb, 8, protowire.BytesType)
	mb = protowire.AppendBytes(mb, opset)
	mb = protowire.AppendTag(mb, 7, protowire.BytesType)
	mb = protowire.AppendBytes(mb, gb)
	return mb, nil
}

// halfToFloat widens an IEEE 754 half-precision number.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp, frac := uint32(h>>10)&0x1f, uint32(h&0x3ff)
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac × 2^-24
		v := float32(frac) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// padding maps TensorFlow's SAME (extra padding after) and VALID.
func padding(n tfjsNode) attr {
	if n.Attr["padding"].str() == "SAME" {
		return stringAttr("auto_pad", "SAME_UPPER")
	}
	return stringAttr("auto_pad", "VALID")
}
