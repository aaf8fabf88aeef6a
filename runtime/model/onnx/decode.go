package onnx

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
)

// Output formats: how a graph's outputs are read into AutoML predictions.
const (
	FormatClassification = "classification" // [1,C] or [C]: logits or probabilities
	FormatYOLOv5         = "yolov5"         // [1,N,5+C]: cx,cy,w,h (input pixels), objectness, class scores
	FormatYOLOv8         = "yolov8"         // [1,4+C,N]: cx,cy,w,h (input pixels), class scores (v8, v11)
	FormatSSD            = "ssd"            // boxes [1,N,4], scores [1,N], classes [1,N] (+ count): TF OD API, torchvision
)

// Formats lists them, for messages and the schema.
var Formats = []string{FormatClassification, FormatYOLOv5, FormatYOLOv8, FormatSSD}

// Tensor is one output as ONNX Runtime gave it.
type Tensor struct {
	Name  string
	Shape []int64
	Data  []float32
}

// Frame maps the model input's pixels back to the image: the image (W×H) was scaled
// by Scale and placed at PadX, PadY in the input (letterbox; stretch has ScaleX ≠
// ScaleY; a centre crop a negative pad).
type Frame struct {
	W, H           int     // the image
	ScaleX, ScaleY float64 // input pixels per image pixel
	PadX, PadY     float64 // where the image's origin lies in the input
	InW, InH       int     // the model input
}

// box is one detection in image pixels.
type box struct {
	x0, y0, x1, y1 float64
	score          float64
	class          int
}

// toImage maps input-pixel corners to image pixels, clipped to the image.
func (f Frame) toImage(x0, y0, x1, y1 float64) (float64, float64, float64, float64) {
	clip := func(v, hi float64) float64 { return math.Max(0, math.Min(hi, v)) }
	return clip((x0-f.PadX)/f.ScaleX, float64(f.W)), clip((y0-f.PadY)/f.ScaleY, float64(f.H)),
		clip((x1-f.PadX)/f.ScaleX, float64(f.W)), clip((y1-f.PadY)/f.ScaleY, float64(f.H))
}

// Decoder reads outputs into one prediction.
type Decoder struct {
	Format string
	Labels []string // class names by id ("" or missing: the id)
	IoU    float64  // non-maximum suppression within a class (default 0.45)
}

// Decode reads the outputs of one image (batch of 1) as d.Format says.
func (d Decoder) Decode(outs []Tensor, f Frame, p model.Parameters) (model.Prediction, error) {
	switch d.Format {
	case FormatClassification:
		return d.classification(outs, p)
	case FormatYOLOv5, FormatYOLOv8:
		return d.yolo(outs, f, p)
	case FormatSSD:
		return d.ssd(outs, f, p)
	}
	return model.Prediction{}, fmt.Errorf("onnx: output format %q: use one of %s", d.Format, strings.Join(Formats, ", "))
}

func (d Decoder) label(c int) string {
	if c >= 0 && c < len(d.Labels) && d.Labels[c] != "" {
		return d.Labels[c]
	}
	return strconv.Itoa(c)
}

func (d Decoder) classification(outs []Tensor, p model.Parameters) (model.Prediction, error) {
	if len(outs) != 1 || len(outs[0].Data) == 0 || count(outs[0].Shape) != int64(len(outs[0].Data)) ||
		(len(outs[0].Shape) == 2 && outs[0].Shape[0] != 1) || len(outs[0].Shape) > 2 {
		return model.Prediction{}, mismatch(FormatClassification, "one output of [1,C] or [C] scores", outs)
	}
	scores := probabilities(outs[0].Data)
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	pred := model.Prediction{IDs: []string{}, DisplayNames: []string{}, Confidences: []float64{}}
	for _, c := range order {
		if scores[c] < p.ConfidenceThreshold || (p.MaxPredictions > 0 && len(pred.IDs) >= p.MaxPredictions) {
			break
		}
		pred.IDs = append(pred.IDs, strconv.Itoa(c))
		pred.DisplayNames = append(pred.DisplayNames, d.label(c))
		pred.Confidences = append(pred.Confidences, scores[c])
	}
	return pred, nil
}

// probabilities returns the scores as probabilities: as they are when they already
// are (each in 0..1, summing to 1 within float error), else their softmax (logits).
func probabilities(v []float32) []float64 {
	sum, inRange := 0.0, true
	for _, x := range v {
		sum += float64(x)
		inRange = inRange && x >= 0 && x <= 1
	}
	out := make([]float64, len(v))
	if inRange && math.Abs(sum-1) < 1e-3 {
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	hi := math.Inf(-1)
	for _, x := range v {
		hi = math.Max(hi, float64(x))
	}
	total := 0.0
	for i, x := range v {
		out[i] = math.Exp(float64(x) - hi)
		total += out[i]
	}
	for i := range out {
		out[i] /= total
	}
	return out
}

func (d Decoder) yolo(outs []Tensor, f Frame, p model.Parameters) (model.Prediction, error) {
	if len(outs) < 1 || len(outs[0].Shape) != 3 || outs[0].Shape[0] != 1 || count(outs[0].Shape) != int64(len(outs[0].Data)) {
		return model.Prediction{}, mismatch(d.Format, "a first output of [1,4+C,N] (v8, v11) or [1,N,5+C] (v5)", outs)
	}
	t := outs[0]
	a, b := int(t.Shape[1]), int(t.Shape[2])
	// at(i, k) is attribute k of candidate i, whichever way the tensor is laid out.
	var n, attrs int
	var at func(i, k int) float64
	switch d.Format {
	case FormatYOLOv8:
		if a < 5 || a > b {
			return model.Prediction{}, mismatch(d.Format, "[1,4+C,N] with fewer attributes than candidates", outs)
		}
		attrs, n = a, b
		at = func(i, k int) float64 { return float64(t.Data[k*n+i]) }
	default:
		if b < 6 || b > a {
			return model.Prediction{}, mismatch(d.Format, "[1,N,5+C] with fewer attributes than candidates", outs)
		}
		n, attrs = a, b
		at = func(i, k int) float64 { return float64(t.Data[i*attrs+k]) }
	}
	first := 4 // the first class score
	if d.Format == FormatYOLOv5 {
		first = 5
	}
	var boxes []box
	for i := range n {
		best, score := -1, 0.0
		for c := first; c < attrs; c++ {
			if s := at(i, c); best < 0 || s > score {
				best, score = c-first, s
			}
		}
		if d.Format == FormatYOLOv5 {
			score *= at(i, 4)
		}
		if score < p.ConfidenceThreshold {
			continue
		}
		cx, cy, w, h := at(i, 0), at(i, 1), at(i, 2), at(i, 3)
		x0, y0, x1, y1 := f.toImage(cx-w/2, cy-h/2, cx+w/2, cy+h/2)
		boxes = append(boxes, box{x0, y0, x1, y1, score, best})
	}
	return d.detections(boxes, f, p), nil
}

func (d Decoder) ssd(outs []Tensor, f Frame, p model.Parameters) (model.Prediction, error) {
	var boxesT, scoresT, classesT, countT *Tensor
	for i := range outs {
		o := &outs[i]
		name := strings.ToLower(o.Name)
		switch {
		case strings.Contains(name, "box"):
			boxesT = o
		case strings.Contains(name, "score"):
			scoresT = o
		case strings.Contains(name, "class") || strings.Contains(name, "label"):
			classesT = o
		case strings.Contains(name, "num") || strings.Contains(name, "count"):
			countT = o
		}
	}
	if boxesT == nil || scoresT == nil || classesT == nil || len(boxesT.Data) != 4*len(scoresT.Data) || len(classesT.Data) != len(scoresT.Data) {
		return model.Prediction{}, mismatch(FormatSSD, "outputs named *box* [1,N,4], *score* [1,N] and *class* or *label* [1,N] (and *num* [1])", outs)
	}
	n := len(scoresT.Data)
	if countT != nil && len(countT.Data) == 1 && int(countT.Data[0]) < n {
		n = max(0, int(countT.Data[0]))
	}
	// TF's Object Detection API (detection_boxes): [yMin, xMin, yMax, xMax], 0..1 of
	// the input; torchvision and most others: [x1, y1, x2, y2] in input pixels.
	tf := strings.Contains(strings.ToLower(boxesT.Name), "detection_boxes")
	var boxes []box
	for i := range n {
		s := float64(scoresT.Data[i])
		if s < p.ConfidenceThreshold {
			continue
		}
		b := boxesT.Data[4*i : 4*i+4]
		x0, y0, x1, y1 := float64(b[0]), float64(b[1]), float64(b[2]), float64(b[3])
		if tf {
			x0, y0, x1, y1 = float64(b[1])*float64(f.InW), float64(b[0])*float64(f.InH), float64(b[3])*float64(f.InW), float64(b[2])*float64(f.InH)
		}
		x0, y0, x1, y1 = f.toImage(x0, y0, x1, y1)
		boxes = append(boxes, box{x0, y0, x1, y1, s, int(classesT.Data[i])})
	}
	return d.detections(boxes, f, p), nil
}

// detections suppresses overlaps within each class (a person and a bicycle may
// overlap; two boxes of one person may not), best first, and writes AutoML boxes.
func (d Decoder) detections(boxes []box, f Frame, p model.Parameters) model.Prediction {
	iou := d.IoU
	if iou <= 0 {
		iou = 0.45
	}
	boxes = slices.DeleteFunc(boxes, func(b box) bool { return b.x1 <= b.x0 || b.y1 <= b.y0 })
	kept := meta.Suppress(boxes, func(b box) float64 { return b.score },
		func(k, b box) bool { return k.class == b.class && k.rect().IoU(b.rect()) > iou }, p.MaxPredictions)
	pred := model.Prediction{IDs: []string{}, DisplayNames: []string{}, Confidences: []float64{}, BBoxes: [][4]float64{}}
	for _, b := range kept {
		pred.IDs = append(pred.IDs, strconv.Itoa(b.class))
		pred.DisplayNames = append(pred.DisplayNames, d.label(b.class))
		pred.Confidences = append(pred.Confidences, b.score)
		pred.BBoxes = append(pred.BBoxes, [4]float64{b.x0 / float64(f.W), b.x1 / float64(f.W), b.y0 / float64(f.H), b.y1 / float64(f.H)})
	}
	return pred
}

// rect is b's corners for meta.Box.IoU (a ratio, so pixel units serve as well as 0..1).
func (b box) rect() meta.Box { return meta.Box{XMin: b.x0, YMin: b.y0, XMax: b.x1, YMax: b.y1} }

func count(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// mismatch says what the outputs look like against what format wanted, and how to
// pick another.
func mismatch(format, want string, outs []Tensor) error {
	return fmt.Errorf("onnx: the model's outputs %s do not fit format %s (%s): set the analysis' onnx.format to one of %s",
		Describe(outs), format, want, strings.Join(Formats, ", "))
}

// Describe lists outputs as name[shape].
func Describe(outs []Tensor) string {
	parts := make([]string, len(outs))
	for i, o := range outs {
		dims := make([]string, len(o.Shape))
		for j, d := range o.Shape {
			dims[j] = strconv.FormatInt(d, 10)
		}
		parts[i] = o.Name + "[" + strings.Join(dims, ",") + "]"
	}
	return strings.Join(parts, " ")
}
