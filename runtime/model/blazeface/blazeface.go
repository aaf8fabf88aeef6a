// Package blazeface runs MediaPipe's BlazeFace back-camera face detector
// (model/LICENSE) on ONNX Runtime. The model is embedded in TensorFlow.js form and
// translated to ONNX at start-up (convert.go); ONNX Runtime's shared library is
// installed by scripts/install-onnxruntime.sh and found at run time (Library).
package blazeface

import (
	_ "embed"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/ortenv"
)

//go:embed model/blazeface-back.json
var backJSON []byte

//go:embed model/blazeface-back.bin
var backBin []byte

//go:embed model/facemesh-detection-full.json
var fullJSON []byte

//go:embed model/facemesh-detection-full.bin
var fullBin []byte

// Model names one of the embedded networks.
type Model int

const (
	// BackCamera is BlazeFace's back-camera model: 256×256 input, anchors on a
	// 16×16 grid (2 a cell) and an 8×8 one (6 a cell); faces from about 16 px.
	BackCamera Model = iota
	// FullRange is MediaPipe's full-range face detector: 192×192 input, one anchor
	// a cell of a 48×48 grid (stride 4), trained for faces up to 5 m from the camera.
	FullRange
)

// Size is the back-camera model's input side.
const Size = 256

// Version names the back-camera model and this package's decoding of it, for results.
const Version = "blazeface-back/1"

const inputName = "input"

type grid struct{ stride, per int }

// spec is what differs between the models: files, input, outputs and their layout.
type spec struct {
	json, bin []byte
	size      int
	outputs   []string
	grids     []grid
	// split cuts image k of count's scores and boxes out of the outputs (in
	// outputs' order).
	split   func(data [][]float32, k, count int) Raw
	anchors [][2]float32 // for a size×size input
	dense   bool         // the graph runs on inputs of any size (RunDense)
}

var specs = map[Model]*spec{
	BackCamera: {
		json: backJSON, bin: backBin, size: Size,
		// Scores and boxes for the 16×16 grid, then for the 8×8 grid.
		outputs: []string{"Identity", "Identity_2", "Identity_1", "Identity_3"},
		grids:   []grid{{16, 2}, {32, 6}},
		dense:   true,
		split: func(data [][]float32, k, count int) Raw {
			big, small := len(data[0])/count, len(data[2])/count
			r := Raw{Scores: make([]float32, 0, big+small), Boxes: make([]float32, 0, (big+small)*16)}
			r.Scores = append(append(r.Scores, data[0][k*big:(k+1)*big]...), data[2][k*small:(k+1)*small]...)
			r.Boxes = append(append(r.Boxes, data[1][k*big*16:(k+1)*big*16]...), data[3][k*small*16:(k+1)*small*16]...)
			return r
		},
	},
	FullRange: {
		json: fullJSON, bin: fullBin, size: 192,
		// Per anchor: score, then 16 numbers (box and six key points).
		outputs: []string{"Identity"},
		grids:   []grid{{4, 1}},
		split: func(data [][]float32, k, count int) Raw {
			n := len(data[0]) / count / 17
			r := Raw{Scores: make([]float32, n), Boxes: make([]float32, n*16)}
			for i := range n {
				row := data[0][(k*n+i)*17:]
				r.Scores[i] = row[0]
				copy(r.Boxes[i*16:(i+1)*16], row[1:17])
			}
			return r
		},
	},
}

func init() {
	for _, s := range specs {
		s.anchors = s.anchorsFor(s.size, s.size)
	}
}

// anchorsFor returns the anchor centres, in input pixels, of a w×h input.
func (s *spec) anchorsFor(w, h int) [][2]float32 {
	var a [][2]float32
	for _, g := range s.grids {
		for y := range h / g.stride {
			for x := range w / g.stride {
				for range g.per {
					a = append(a, [2]float32{float32(g.stride) * (float32(x) + 0.5), float32(g.stride) * (float32(y) + 0.5)})
				}
			}
		}
	}
	return a
}

// ErrNoRuntime: ONNX Runtime's shared library was not found.
var ErrNoRuntime = ortenv.ErrNoRuntime

// Library is where ONNX Runtime's shared library is (ortenv.Library).
func Library() (string, error) { return ortenv.Library() }

func startRuntime() error { return ortenv.Start() }

// Net is the network on ONNX Runtime, one thread per run: jobs run side by side,
// each on its core. It is safe for concurrent use.
type Net struct {
	session *ort.DynamicAdvancedSession
	spec    *spec
	slots   chan struct{} // runs at once: one per core, so memory stays bounded
	pixels  atomic.Int64  // input pixels run, for benchmarks
}

// Pixels is how many input pixels the network has run: its cost is close to
// proportional to them (BenchmarkBlazeFaceWindow gives the cost of 256×256).
func (n *Net) Pixels() int64 { return n.pixels.Load() }

// ONNX is model m translated to ONNX (what Net runs).
func ONNX(m Model) ([]byte, error) {
	s := specs[m]
	shape := []int{-1, s.size, s.size, 3}
	if s.dense {
		shape = []int{-1, -1, -1, 3}
	}
	return toONNX(s.json, s.bin, inputName, shape, s.outputs)
}

// NewNet loads the back-camera model into ONNX Runtime.
func NewNet() (*Net, error) { return NewNetOf(BackCamera) }

// NewNetOf loads model m into ONNX Runtime.
func NewNetOf(m Model) (*Net, error) {
	if err := startRuntime(); err != nil {
		return nil, err
	}
	spec, ok := specs[m]
	if !ok {
		return nil, fmt.Errorf("blazeface: no model %d", m)
	}
	onnx, err := ONNX(m)
	if err != nil {
		return nil, fmt.Errorf("blazeface: %w", err)
	}
	opts, err := ortenv.SessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	// Activations come from the environment's arena (ortenv). The memory pattern is
	// off: it planned one block for a whole run per input shape, and the dense run's
	// shape differs with every image's (peak RSS of one 12 MP job 402 MB with it,
	// 301 MB without, at the same speed).
	if err := opts.SetMemPattern(false); err != nil {
		return nil, err
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx, []string{inputName}, spec.outputs, opts)
	if err != nil {
		return nil, fmt.Errorf("blazeface: load into ONNX Runtime: %w", err)
	}
	return &Net{session: s, spec: spec, slots: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// Size is the network's input side in pixels.
func (n *Net) Size() int { return n.spec.size }

// Close frees the session.
func (n *Net) Close() error { return n.session.Destroy() }

// Raw is the network's output for one image: per anchor (the grids in order), a
// score logit and 16 numbers (box centre offset, size, six key points), in input pixels.
type Raw struct {
	Scores  []float32 // one per anchor
	Boxes   []float32 // 16 per anchor
	anchors [][2]float32
}

// Like is a Raw on r's anchors with other outputs: a reference runtime's, so that
// they decode the same way.
func (r Raw) Like(scores, boxes []float32) Raw {
	return Raw{Scores: scores, Boxes: boxes, anchors: r.anchors}
}

// Run runs count images (count×Size()×Size()×3 floats in [-1, 1], NHWC) in one batch.
func (n *Net) Run(input []float32, count int) ([]Raw, error) {
	return n.run(input, count, n.spec.size, n.spec.size, n.spec.anchors)
}

// Stride is what a dense input's sides must be a multiple of.
const Stride = 32

// RunDense runs the network once over a whole w×h input (w×h×3 floats in [-1, 1],
// NHWC; w and h multiples of Stride): the same as a window at every position, each
// computed once, so it costs what w×h/Size² windows cost and no seam splits a face.
func (n *Net) RunDense(input []float32, w, h int) (Raw, error) {
	raws, err := n.runFree(input, 1, w, h)
	if err != nil {
		return Raw{}, err
	}
	return raws[0], nil
}

// RunSized runs count square images of side size (a multiple of Stride) in one batch.
func (n *Net) RunSized(input []float32, count, size int) ([]Raw, error) {
	return n.runFree(input, count, size, size)
}

// runFree runs count w×h images, a size other than the graph's own only when the
// graph takes any (dense) and its sides are multiples of Stride.
func (n *Net) runFree(input []float32, count, w, h int) ([]Raw, error) {
	if !n.spec.dense && (w != n.spec.size || h != n.spec.size) {
		return nil, fmt.Errorf("blazeface: this model runs only on %d×%d inputs", n.spec.size, n.spec.size)
	}
	if w%Stride != 0 || h%Stride != 0 || w <= 0 || h <= 0 {
		return nil, fmt.Errorf("blazeface: an input of %d×%d is not a multiple of %d", w, h, Stride)
	}
	return n.run(input, count, w, h, n.spec.anchorsFor(w, h))
}

func (n *Net) run(input []float32, count, w, h int, anchors [][2]float32) ([]Raw, error) {
	if len(input) != count*w*h*3 {
		return nil, fmt.Errorf("blazeface: %d floats for %d images of %d×%d", len(input), count, w, h)
	}
	in, err := ort.NewTensor(ort.NewShape(int64(count), int64(h), int64(w), 3), input)
	if err != nil {
		return nil, err
	}
	defer in.Destroy()
	outs := make([]ort.Value, len(n.spec.outputs))
	n.pixels.Add(int64(count * w * h))
	n.slots <- struct{}{}
	err = n.session.Run([]ort.Value{in}, outs)
	<-n.slots
	if err != nil {
		return nil, fmt.Errorf("blazeface: run: %w", err)
	}
	data := make([][]float32, len(outs))
	for i, o := range outs {
		defer o.Destroy()
		t, ok := o.(*ort.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("blazeface: output %s is %T", n.spec.outputs[i], o)
		}
		data[i] = t.GetData()
	}
	total := 0
	for _, d := range data {
		total += len(d)
	}
	if want := count * len(anchors) * 17; total != want {
		return nil, fmt.Errorf("blazeface: %d output numbers for %d images, want %d", total, count, want)
	}
	raws := make([]Raw, count)
	for k := range raws {
		raws[k] = n.spec.split(data, k, count)
		raws[k].anchors = anchors
	}
	return raws, nil
}

// Face is one detection in input pixels.
type Face struct {
	X0, Y0, X1, Y1 float64
	Score          float64
}

// Decode turns a Raw into faces scoring at least threshold, overlapping ones merged
// (non-maximum suppression at IoU 0.3).
func (r Raw) Decode(threshold float64) []Face {
	var faces []Face
	for i, logit := range r.Scores {
		s := 1 / (1 + math.Exp(-math.Max(-100, math.Min(100, float64(logit)))))
		if s < threshold {
			continue
		}
		b := r.Boxes[i*16 : i*16+4]
		cx, cy := float64(r.anchors[i][0]+b[0]), float64(r.anchors[i][1]+b[1])
		w, h := float64(b[2]), float64(b[3])
		faces = append(faces, Face{X0: cx - w/2, Y0: cy - h/2, X1: cx + w/2, Y1: cy + h/2, Score: s})
	}
	return Suppress(faces, 0.3)
}

// Suppress keeps the best of each group of faces overlapping by more than iou.
func Suppress(faces []Face, iou float64) []Face {
	return meta.Suppress(faces, func(f Face) float64 { return f.Score }, func(k, f Face) bool { return IoU(f, k) > iou }, 0)
}

// IoU is the intersection over union of two boxes (meta.Box.IoU's, on pixel corners).
func IoU(a, b Face) float64 {
	return meta.Box{XMin: a.X0, YMin: a.Y0, XMax: a.X1, YMax: a.Y1}.IoU(meta.Box{XMin: b.X0, YMin: b.Y0, XMax: b.X1, YMax: b.Y1})
}
