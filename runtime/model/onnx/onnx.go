// Package onnx runs a team's own ONNX model in-process on ONNX Runtime: its input's
// name, shape, type and layout read from the graph (and Ultralytics' names, imgsz
// and task from its metadata), the image pre-processed as the project file says
// (resize, channel order, scale, mean and std), and its outputs decoded into the
// AutoML predictions the rest of the pipeline reads (decode.go).
package onnx

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/ortenv"
)

// Layouts of an image input.
const (
	NCHW = "NCHW"
	NHWC = "NHWC"
)

// Resize modes: how an image becomes the input's size.
const (
	Letterbox  = "letterbox"   // fit inside, keep the aspect, pad (Ultralytics: grey 114)
	Stretch    = "stretch"     // to the input's size exactly, aspect not kept
	CentreCrop = "centre-crop" // cover the input, keep the aspect, crop the middle
)

// Info is what a file says of itself.
type Info struct {
	Input    IO
	Outputs  []IO
	Metadata map[string]string
	Layout   string // NCHW or NHWC
	Width    int    // the input's, from the graph or the imgsz metadata (0: not fixed)
	Height   int
	Labels   []string // from the metadata's names (Ultralytics)
	Task     string   // the metadata's task (Ultralytics: detect, classify…)
	Format   string   // the output format the outputs fit ("" when none does)
	Why      string   // why Format is what it is, or why none fits
}

// IO is one input or output.
type IO struct {
	Name  string
	Shape []int64 // -1: any
	Type  string
}

// Inspect reads a model file's inputs, outputs and metadata, and what follows for
// running it: the image input's layout and size, the class names, the output format.
func Inspect(data []byte) (Info, error) {
	if err := ortenv.Start(); err != nil {
		return Info{}, err
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return Info{}, fmt.Errorf("onnx: not a model ONNX Runtime can load: %w", err)
	}
	var info Info
	for _, o := range outs {
		info.Outputs = append(info.Outputs, IO{Name: o.Name, Shape: []int64(o.Dimensions), Type: typeName(o.DataType)})
	}
	if len(ins) != 1 {
		return info, fmt.Errorf("onnx: the model has %d inputs; visionstack feeds one image input", len(ins))
	}
	in := ins[0]
	info.Input = IO{Name: in.Name, Shape: []int64(in.Dimensions), Type: typeName(in.DataType)}
	if in.DataType != ort.TensorElementDataTypeFloat {
		return info, fmt.Errorf("onnx: input %s is %s; visionstack feeds float32 images (export the model with a float input)", in.Name, in.DataType)
	}
	d := info.Input.Shape
	switch {
	case len(d) == 4 && d[1] == 3:
		info.Layout, info.Height, info.Width = NCHW, int(d[2]), int(d[3])
	case len(d) == 4 && d[3] == 3:
		info.Layout, info.Height, info.Width = NHWC, int(d[1]), int(d[2])
	default:
		return info, fmt.Errorf("onnx: input %s has shape %v: visionstack feeds a batch of 3-channel images, [N,3,H,W] or [N,H,W,3]", in.Name, d)
	}
	if meta, err := metadata(data); err == nil {
		info.Metadata = meta
	}
	info.Labels, info.Task = names(info.Metadata["names"]), info.Metadata["task"]
	if info.Width <= 0 || info.Height <= 0 { // dynamic: Ultralytics says imgsz
		if h, w, ok := imgsz(info.Metadata["imgsz"]); ok {
			info.Height, info.Width = h, w
		}
	}
	info.Format, info.Why = guess(info)
	return info, nil
}

func typeName(t ort.TensorElementDataType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}

// metadata reads the file's custom metadata map.
func metadata(data []byte) (map[string]string, error) {
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	defer s.Destroy()
	m, err := s.GetModelMetadata()
	if err != nil {
		return nil, err
	}
	defer m.Destroy()
	keys, err := m.GetCustomMetadataMapKeys()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range keys {
		if v, ok, err := m.LookupCustomMetadataMap(k); err == nil && ok {
			out[k] = v
		}
	}
	return out, nil
}

var reName = regexp.MustCompile(`(\d+)\s*:\s*'((?:[^'\\]|\\.)*)'|(\d+)\s*:\s*"((?:[^"\\]|\\.)*)"`)

// names reads Ultralytics' names metadata, a Python dict: {0: 'person', 1: 'bicycle'}.
func names(s string) []string {
	var out []string
	for _, m := range reName.FindAllStringSubmatch(s, -1) {
		idx, name := m[1], m[2]
		if idx == "" {
			idx, name = m[3], m[4]
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i > 100_000 {
			continue
		}
		for len(out) <= i {
			out = append(out, "")
		}
		out[i] = name
	}
	return out
}

// imgsz reads Ultralytics' imgsz metadata: [640, 640] (height, width).
func imgsz(s string) (h, w int, ok bool) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) == 2 {
		h, _ = strconv.Atoi(f[0])
		w, _ = strconv.Atoi(f[1])
	} else if len(f) == 1 {
		h, _ = strconv.Atoi(f[0])
		w = h
	}
	return h, w, h > 0 && w > 0
}

// guess picks the output format the outputs fit, or says why none does.
func guess(info Info) (format, why string) {
	outs := info.Outputs
	if info.Task == "classify" && len(outs) == 1 {
		return FormatClassification, "Ultralytics metadata: task classify"
	}
	if len(outs) == 1 {
		d := outs[0].Shape
		switch {
		case len(d) == 2 || len(d) == 1:
			return FormatClassification, fmt.Sprintf("one output %v: class scores", d)
		case len(d) == 3 && d[1] > 0 && d[2] > 0 && d[1] < d[2] && d[1] >= 5:
			return FormatYOLOv8, fmt.Sprintf("one output %v: [1,4+C,N]", d)
		case len(d) == 3 && d[1] > 0 && d[2] > 0 && d[1] > d[2] && d[2] >= 6:
			return FormatYOLOv5, fmt.Sprintf("one output %v: [1,N,5+C]", d)
		case len(d) == 3 && info.Task == "detect":
			return FormatYOLOv8, fmt.Sprintf("one output %v, Ultralytics task detect", d)
		}
	}
	var box, score, class bool
	for _, o := range outs {
		n := strings.ToLower(o.Name)
		box = box || strings.Contains(n, "box")
		score = score || strings.Contains(n, "score")
		class = class || strings.Contains(n, "class") || strings.Contains(n, "label")
	}
	if box && score && class {
		return FormatSSD, "outputs named boxes, scores and classes"
	}
	var shapes []string
	for _, o := range outs {
		shapes = append(shapes, fmt.Sprintf("%s%v", o.Name, o.Shape))
	}
	return "", fmt.Sprintf("outputs %s fit no format visionstack reads by itself: set the analysis' onnx.format to one of %s", strings.Join(shapes, " "), strings.Join(Formats, ", "))
}

// Options of a model beyond what the file says.
type Options struct {
	Format   string    // output format ("" or auto: from Info)
	Resize   string    // letterbox (default for detection), stretch, centre-crop (default for classification)
	Channels string    // RGB (default) or BGR
	Scale    float64   // pixel values are multiplied by it first (default 1/255)
	Mean     []float64 // then have this subtracted (default 0)…
	Std      []float64 // …and are divided by this (default 1)
	Pad      int       // letterbox fill, 0..255 (default 114)
	Labels   []string  // class names, overriding the file's
	Width    int       // the input's size when the graph leaves it open
	Height   int
	Version  string // what results record as the model version
}

// Model is a loaded ONNX model, a model.Predictor. It is safe for concurrent use:
// one run at a time per core, each on one thread.
type Model struct {
	session *ort.DynamicAdvancedSession
	info    Info
	o       Options
	decoder Decoder
	slots   chan struct{}
	outputs []string
}

var _ model.Predictor = (*Model)(nil)

// New loads data (an ONNX file) with o.
func New(data []byte, o Options) (*Model, error) {
	info, err := Inspect(data)
	if err != nil {
		return nil, err
	}
	if o.Width > 0 && o.Height > 0 {
		info.Width, info.Height = o.Width, o.Height
	}
	if info.Width <= 0 || info.Height <= 0 {
		return nil, fmt.Errorf("onnx: input %s has no fixed size (%v) and no imgsz metadata: set the analysis' onnx.width and onnx.height", info.Input.Name, info.Input.Shape)
	}
	format := o.Format
	if format == "" || format == "auto" {
		if info.Format == "" {
			return nil, errors.New("onnx: " + info.Why)
		}
		format = info.Format
	}
	if len(o.Labels) > 0 {
		info.Labels = o.Labels
	}
	if o.Resize == "" {
		o.Resize = Letterbox
		if format == FormatClassification {
			o.Resize = CentreCrop
		}
	}
	if o.Channels == "" {
		o.Channels = "RGB"
	}
	if o.Scale == 0 {
		o.Scale = 1.0 / 255
	}
	if o.Pad == 0 {
		o.Pad = 114
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	var outputs []string
	for _, out := range info.Outputs {
		outputs = append(outputs, out.Name)
	}
	opts, err := ortenv.SessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{info.Input.Name}, outputs, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx: load into ONNX Runtime: %w", err)
	}
	return &Model{session: s, info: info, o: o, outputs: outputs, slots: make(chan struct{}, runtime.GOMAXPROCS(0)),
		decoder: Decoder{Format: format, Labels: info.Labels}}, nil
}

func (o Options) check() error {
	switch o.Resize {
	case Letterbox, Stretch, CentreCrop:
	default:
		return fmt.Errorf("onnx: resize %q: use %s, %s or %s", o.Resize, Letterbox, Stretch, CentreCrop)
	}
	if o.Channels != "RGB" && o.Channels != "BGR" {
		return fmt.Errorf("onnx: channels %q: use RGB or BGR", o.Channels)
	}
	if (len(o.Mean) != 0 && len(o.Mean) != 3) || (len(o.Std) != 0 && len(o.Std) != 3) {
		return errors.New("onnx: mean and std take three values, one per channel (in the channel order)")
	}
	for _, s := range o.Std {
		if s == 0 {
			return errors.New("onnx: std of 0 divides by zero")
		}
	}
	return nil
}

// Info is what the file said, with the options applied.
func (m *Model) Info() Info { return m.info }

// Format is the output format the model is decoded as.
func (m *Model) Format() string { return m.decoder.Format }

// Close releases the session.
func (m *Model) Close() error { return m.session.Destroy() }

// InputLimits gate what the model decodes: the defaults of a project's prepare step.
var InputLimits = imaging.Limits{MaxBytes: 20 << 20, MaxPixels: 50_000_000, MaxDimension: 16384, Formats: []string{"jpeg", "png", "webp"}}

// Predict runs each instance: decoded (the payload Prepare made, not the original
// again), pre-processed, run, decoded into a prediction.
func (m *Model) Predict(ctx context.Context, instances []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	return model.EachImage(ctx, instances, func(data []byte) (model.Prediction, error) {
		img, _, err := InputLimits.Thumbnail(data, imaging.MaxSide, imaging.CropNone, false)
		if err != nil {
			return model.Prediction{}, err
		}
		rgb, w, h, err := img.RGB()
		img.Close()
		if err != nil {
			return model.Prediction{}, err
		}
		return m.PredictRGB(rgb, w, h, p)
	})
}

// PredictRGB runs the model on 8-bit RGB pixels (w×h).
func (m *Model) PredictRGB(rgb []uint8, w, h int, p model.Parameters) (model.Prediction, error) {
	input, frame := m.Preprocess(rgb, w, h)
	outs, err := m.Run(input)
	if err != nil {
		return model.Prediction{}, err
	}
	pred, err := m.decoder.Decode(outs, frame, p)
	if err != nil {
		return model.Prediction{}, fault.Permanent(err) // the model's outputs: no retry changes them
	}
	pred.Version = m.o.Version
	return pred, nil
}

// Run runs the model on one pre-processed input.
func (m *Model) Run(input []float32) ([]Tensor, error) {
	shape := ort.NewShape(1, 3, int64(m.info.Height), int64(m.info.Width))
	if m.info.Layout == NHWC {
		shape = ort.NewShape(1, int64(m.info.Height), int64(m.info.Width), 3)
	}
	in, err := ort.NewTensor(shape, input)
	if err != nil {
		return nil, err
	}
	defer in.Destroy()
	outs := make([]ort.Value, len(m.outputs))
	m.slots <- struct{}{}
	err = m.session.Run([]ort.Value{in}, outs)
	<-m.slots
	if err != nil {
		return nil, fmt.Errorf("onnx: run: %w", err)
	}
	tensors := make([]Tensor, len(outs))
	for i, o := range outs {
		defer o.Destroy()
		var data []float32
		switch t := o.(type) {
		case *ort.Tensor[float32]:
			data = append([]float32(nil), t.GetData()...)
		case *ort.Tensor[int64]: // class ids, counts
			for _, v := range t.GetData() {
				data = append(data, float32(v))
			}
		case *ort.Tensor[int32]:
			for _, v := range t.GetData() {
				data = append(data, float32(v))
			}
		default:
			return nil, fmt.Errorf("onnx: output %s is %T: visionstack reads float32, int64 and int32 outputs", m.outputs[i], o)
		}
		tensors[i] = Tensor{Name: m.outputs[i], Shape: []int64(o.GetShape()), Data: data}
	}
	return tensors, nil
}

// Preprocess turns w×h RGB pixels into the model's input and the frame that maps
// its boxes back: resized as Options say (bilinear, pixel centres aligned: what
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False) and
// torchvision's Resize(antialias=False) do), in the channel order, scaled,
// normalised, laid out NCHW or NHWC.
func (m *Model) Preprocess(rgb []uint8, w, h int) ([]float32, Frame) {
	W, H := m.info.Width, m.info.Height
	f := Frame{W: w, H: h, InW: W, InH: H}
	sx, sy := float64(W)/float64(w), float64(H)/float64(h)
	var rw, rh int // the image's size in the input
	switch m.o.Resize {
	case Stretch:
		f.ScaleX, f.ScaleY, rw, rh = sx, sy, W, H
	case Letterbox:
		s := min(sx, sy)
		rw, rh = int(float64(w)*s+0.5), int(float64(h)*s+0.5)
		f.ScaleX, f.ScaleY = float64(rw)/float64(w), float64(rh)/float64(h)
		f.PadX, f.PadY = float64((W-rw)/2), float64((H-rh)/2)
	case CentreCrop:
		s := max(sx, sy)
		rw, rh = int(float64(w)*s+0.5), int(float64(h)*s+0.5)
		f.ScaleX, f.ScaleY = float64(rw)/float64(w), float64(rh)/float64(h)
		f.PadX, f.PadY = -float64((rw-W)/2), -float64((rh-H)/2)
	}
	resized := resize(rgb, w, h, rw, rh)
	mean, std := [3]float64{}, [3]float64{1, 1, 1}
	copy(mean[:], m.o.Mean)
	copy(std[:], m.o.Std)
	order := [3]int{0, 1, 2}
	if m.o.Channels == "BGR" {
		order = [3]int{2, 1, 0}
	}
	pad := float64(m.o.Pad)
	out := make([]float32, 3*W*H)
	for y := range H {
		for x := range W {
			ix, iy := x-int(f.PadX), y-int(f.PadY)
			inside := ix >= 0 && iy >= 0 && ix < rw && iy < rh
			for c := range 3 {
				v := pad
				if inside {
					v = float64(resized[(iy*rw+ix)*3+order[c]])
				}
				val := float32((v*m.o.Scale - mean[c]) / std[c])
				if m.info.Layout == NCHW {
					out[c*W*H+y*W+x] = val
				} else {
					out[(y*W+x)*3+c] = val
				}
			}
		}
	}
	return out, f
}

// resize scales w×h RGB to rw×rh, bilinear with half-pixel centres (a source
// position below 0 taken as 0, as PyTorch does), in float: no rounding to 8 bits
// between the resize and the model, as in a PyTorch pipeline on tensors. The same
// size is a copy.
func resize(rgb []uint8, w, h, rw, rh int) []float64 {
	out := make([]float64, rw*rh*3)
	if rw == w && rh == h {
		for i, v := range rgb {
			out[i] = float64(v)
		}
		return out
	}
	sx, sy := float64(w)/float64(rw), float64(h)/float64(rh)
	src := func(o int, s float64, n int) (int, int, float64) {
		p := (float64(o)+0.5)*s - 0.5
		if p < 0 {
			p = 0
		}
		i0 := int(p)
		if i0 > n-1 {
			i0 = n - 1
		}
		i1 := min(i0+1, n-1)
		return i0, i1, p - float64(i0)
	}
	for y := range rh {
		y0, y1, fy := src(y, sy, h)
		for x := range rw {
			x0, x1, fx := src(x, sx, w)
			for c := range 3 {
				a := float64(rgb[(y0*w+x0)*3+c])*(1-fx) + float64(rgb[(y0*w+x1)*3+c])*fx
				b := float64(rgb[(y1*w+x0)*3+c])*(1-fx) + float64(rgb[(y1*w+x1)*3+c])*fx
				out[(y*rw+x)*3+c] = a*(1-fy) + b*fy
			}
		}
	}
	return out
}

// SortedMetadata lists the metadata as key: value lines, for inspect.
func (i Info) SortedMetadata() []string {
	var keys []string
	for k := range i.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for j, k := range keys {
		out[j] = k + ": " + i.Metadata[k]
	}
	return out
}
