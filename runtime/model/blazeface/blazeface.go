// Package blazeface runs MediaPipe's BlazeFace back-camera face detector
// (model/LICENSE) on ONNX Runtime. The model is embedded in TensorFlow.js form and
// translated to ONNX at start-up (convert.go); ONNX Runtime's shared library is
// installed by scripts/install-onnxruntime.sh and found at run time (Library).
package blazeface

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

//go:embed model/blazeface-back.json
var modelJSON []byte

//go:embed model/blazeface-back.bin
var modelBin []byte

// Size is the model's input: Size×Size RGB, scaled to [-1, 1].
const Size = 256

// Version names the model and this package's decoding of it, for results.
const Version = "blazeface-back/1"

const inputName = "input"

// The graph's outputs: scores and boxes for the 16×16 grid (2 anchors a cell), then
// for the 8×8 grid (6 a cell).
var outputNames = []string{"Identity", "Identity_2", "Identity_1", "Identity_3"}

// ErrNoRuntime: ONNX Runtime's shared library was not found.
var ErrNoRuntime = errors.New("ONNX Runtime not found: run scripts/install-onnxruntime.sh, or set VISIONSTACK_ONNXRUNTIME to libonnxruntime.so")

// Library is where ONNX Runtime's shared library is: $VISIONSTACK_ONNXRUNTIME, else
// where scripts/install-onnxruntime.sh puts it, else /usr/local/lib (the image).
func Library() (string, error) {
	if p := os.Getenv("VISIONSTACK_ONNXRUNTIME"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VISIONSTACK_ONNXRUNTIME: %w", err)
		}
		return p, nil
	}
	var candidates []string
	cache := os.Getenv("XDG_CACHE_HOME")
	if home, err := os.UserHomeDir(); cache == "" && err == nil {
		cache = filepath.Join(home, ".cache")
	}
	if cache != "" {
		candidates = append(candidates, filepath.Join(cache, "visionstack", "onnxruntime", "1.30.0", "libonnxruntime.so"))
	}
	candidates = append(candidates, "/usr/local/lib/libonnxruntime.so")
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", ErrNoRuntime
}

var (
	envOnce sync.Once
	envErr  error
)

func startRuntime() error {
	envOnce.Do(func() {
		lib, err := Library()
		if err != nil {
			envErr = err
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(); err != nil {
			envErr = fmt.Errorf("start ONNX Runtime (%s): %w", lib, err)
		}
	})
	return envErr
}

// Net is the network on ONNX Runtime, one thread per run: jobs run side by side,
// each on its core. It is safe for concurrent use.
type Net struct {
	session *ort.DynamicAdvancedSession
	slots   chan struct{} // runs at once: one per core, so memory stays bounded
}

// ONNX is the model translated to ONNX (what Net runs).
func ONNX() ([]byte, error) {
	return toONNX(modelJSON, modelBin, inputName, []int{-1, Size, Size, 3}, outputNames)
}

// NewNet loads the model into ONNX Runtime.
func NewNet() (*Net, error) {
	if err := startRuntime(); err != nil {
		return nil, err
	}
	onnx, err := ONNX()
	if err != nil {
		return nil, fmt.Errorf("blazeface: %w", err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	// Without the arena ONNX Runtime returns a run's activations when it ends; with
	// it, every concurrent run's peak stayed allocated (16 concurrent 12 MP jobs
	// peaked at 703 MiB against 409 MiB with pigo).
	if err := opts.SetCpuMemArena(false); err != nil {
		return nil, err
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx, []string{inputName}, outputNames, opts)
	if err != nil {
		return nil, fmt.Errorf("blazeface: load into ONNX Runtime: %w", err)
	}
	return &Net{session: s, slots: make(chan struct{}, runtime.GOMAXPROCS(0))}, nil
}

// Close frees the session.
func (n *Net) Close() error { return n.session.Destroy() }

// Raw is the network's output for one image: per anchor (16×16×2, then 8×8×6), a
// score logit and 16 numbers (box centre offset, size, six key points), in input pixels.
type Raw struct {
	Scores []float32 // 896
	Boxes  []float32 // 896×16
}

// Run runs count images (count×Size×Size×3 floats in [-1, 1], NHWC) in one batch.
func (n *Net) Run(input []float32, count int) ([]Raw, error) {
	if len(input) != count*Size*Size*3 {
		return nil, fmt.Errorf("blazeface: %d floats for %d images", len(input), count)
	}
	in, err := ort.NewTensor(ort.NewShape(int64(count), Size, Size, 3), input)
	if err != nil {
		return nil, err
	}
	defer in.Destroy()
	outs := make([]ort.Value, len(outputNames))
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
			return nil, fmt.Errorf("blazeface: output %s is %T", outputNames[i], o)
		}
		data[i] = t.GetData()
	}
	const big, small = 16 * 16 * 2, 8 * 8 * 6
	if len(data[0]) != count*big || len(data[1]) != count*big*16 || len(data[2]) != count*small || len(data[3]) != count*small*16 {
		return nil, fmt.Errorf("blazeface: output sizes %d %d %d %d", len(data[0]), len(data[1]), len(data[2]), len(data[3]))
	}
	raws := make([]Raw, count)
	for k := range raws {
		r := Raw{Scores: make([]float32, 0, big+small), Boxes: make([]float32, 0, (big+small)*16)}
		r.Scores = append(append(r.Scores, data[0][k*big:(k+1)*big]...), data[2][k*small:(k+1)*small]...)
		r.Boxes = append(append(r.Boxes, data[1][k*big*16:(k+1)*big*16]...), data[3][k*small*16:(k+1)*small*16]...)
		raws[k] = r
	}
	return raws, nil
}

// anchors are the centres, in input pixels, of the network's 896 anchors.
var anchors = func() [][2]float32 {
	var a [][2]float32
	for _, g := range []struct{ stride, per int }{{16, 2}, {32, 6}} {
		cells := Size / g.stride
		for y := range cells {
			for x := range cells {
				for range g.per {
					a = append(a, [2]float32{float32(g.stride) * (float32(x) + 0.5), float32(g.stride) * (float32(y) + 0.5)})
				}
			}
		}
	}
	return a
}()

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
		cx, cy := float64(anchors[i][0]+b[0]), float64(anchors[i][1]+b[1])
		w, h := float64(b[2]), float64(b[3])
		faces = append(faces, Face{X0: cx - w/2, Y0: cy - h/2, X1: cx + w/2, Y1: cy + h/2, Score: s})
	}
	return Suppress(faces, 0.3)
}

// Suppress keeps the best of each group of faces overlapping by more than iou.
func Suppress(faces []Face, iou float64) []Face {
	sort.Slice(faces, func(i, j int) bool { return faces[i].Score > faces[j].Score })
	var kept []Face
	for _, f := range faces {
		ok := true
		for _, k := range kept {
			if IoU(f, k) > iou {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, f)
		}
	}
	return kept
}

// IoU is the intersection over union of two boxes.
func IoU(a, b Face) float64 {
	ix := math.Max(0, math.Min(a.X1, b.X1)-math.Max(a.X0, b.X0))
	iy := math.Max(0, math.Min(a.Y1, b.Y1)-math.Max(a.Y0, b.Y0))
	inter := ix * iy
	union := (a.X1-a.X0)*(a.Y1-a.Y0) + (b.X1-b.X0)*(b.Y1-b.Y0) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}
