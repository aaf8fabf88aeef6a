// Package builtin is the face detector shipped in the binary, behind the Vertex AI
// AutoML detection contract, so the pipeline treats it like any remote model.
//
// By default it is MediaPipe's BlazeFace (back-camera model, runtime/model/blazeface)
// on ONNX Runtime: one window over the whole image for large faces and overlapping
// tiles for small ones. PigoParams select pigo's pixel-intensity cascade
// (cascade/facefinder, MIT, see cascade/LICENSE-pigo), the detector before it: no
// native library, fewer faces found, slower (docs/face-model.md).
//
// Both are tuned for recall, because a missed face is an anonymization failure while
// a blurred hand is only cosmetic.
package builtin

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	pigo "github.com/esimov/pigo/core"

	"github.com/visionstack/visionstack/runtime/model/blazeface"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/transform"
)

//go:embed cascade/facefinder
var facefinder []byte

// Label of every detection.
const Label = "face"

// Version of the built-in model with DefaultParams: the detector and its settings.
// Bump it whenever either changes, so results and drift baselines say which one
// produced them. PigoVersion is the cascade's.
const (
	Version          = BlazeFaceVersion
	PigoVersion      = "pigo-facefinder/1"
	BlazeFaceVersion = blazeface.Version + "-dense1024-turns25-judged"
)

// Detectors.
const (
	DetectorBlazeFace = "blazeface"
	DetectorPigo      = "pigo"
)

// Params tune the detector; DefaultParams are what was measured best on the samples.
type Params struct {
	Detector string // DetectorBlazeFace (DefaultParams; also when empty) or DetectorPigo
	// BlazeFace: the long side of the dense run for small faces, in network pixels
	// (0: tiles instead), and the score its faces need at least. The tile side, in
	// pixels of the analysed image (0: whole image only), and the tiles' overlap: the
	// re-check's detector, or the analysis's with Dense 0.
	Dense    int
	DenseMin float64
	// The dense run's faces scoring from LookFrom up to DenseMin get a second look
	// (as they are and mirrored, enlarged) and count when it scores Confirm or more
	// (0: no second look).
	LookFrom float64
	Confirm  float64
	// LookTurns: faces the upright looks leave between TurnFrom and Confirm are looked
	// at again turned by these angles (degrees), for tilted faces.
	LookTurns []float64
	TurnFrom  float64
	// LookAll: every face gets the second look, not only the doubtful ones; and a
	// face MediaPipe's full-range network scores below VetoBelow in a look at it is
	// dropped (0: no veto). See blazeface.Detector.
	LookAll   bool
	VetoBelow float64
	// A face the looks score below LookSure needs the full-range network's VetoSure;
	// one they score VetoFree or more does not need it at all.
	LookSure, VetoSure, VetoFree float64
	Tile                         int
	Overlap                      float64
	// pigo:
	MinSizeFrac float64   // smallest face, as a fraction of the shorter side
	MinSizePx   int       // and never below this
	ShiftFactor float64   // scan step, fraction of the window
	ScaleFactor float64   // window growth per scale
	Angles      []float64 // passes, in turns (pigo quantises to 1/32)
	IoU         float64   // clustering overlap
	QScale      float64   // confidence = 1 - exp(-Q/QScale)
}

// DefaultParams: see docs/face-model.md for the measurements behind them.
var DefaultParams = Params{
	Detector:    DetectorBlazeFace,
	Dense:       1024,
	DenseMin:    0.75,
	LookFrom:    0.3,
	Confirm:     0.55,
	LookTurns:   []float64{-25, 25},
	TurnFrom:    0.3,
	LookAll:     true,
	VetoBelow:   0.02,
	LookSure:    0.6,
	VetoSure:    0.35,
	VetoFree:    0.75,
	Tile:        512,
	Overlap:     0.25,
	MinSizeFrac: 0.03,
	MinSizePx:   20,
	ShiftFactor: 0.1,
	ScaleFactor: 1.05,
	Angles:      []float64{0},
	IoU:         0.2,
	QScale:      5,
}

// PigoParams select pigo's cascade, the detector before BlazeFace.
var PigoParams = func() Params {
	p := DefaultParams
	p.Detector = DetectorPigo
	return p
}()

// Model is the built-in face detector. It is safe for concurrent use.
type Model struct {
	cascade *pigo.Pigo
	faces   *blazeface.Detector // nil: pigo
	recheck *blazeface.Detector // the verification pass's: whole image and tiles
	params  Params
}

var (
	_ model.Predictor             = (*Model)(nil)
	_ transform.CandidateVerifier = (*Model)(nil)
)

// New loads the detector p names.
func New(p Params) (*Model, error) {
	switch p.Detector {
	case "", DetectorBlazeFace:
		net, err := sharedNet()
		if err != nil {
			return nil, fmt.Errorf("builtin faces: %w", err)
		}
		faces := &blazeface.Detector{Net: net, Tile: p.Tile, Overlap: p.Overlap,
			Dense: p.Dense, DenseMin: p.DenseMin, LookFrom: p.LookFrom, Confirm: p.Confirm,
			LookTurns: p.LookTurns, TurnFrom: p.TurnFrom, LookAll: p.LookAll, VetoBelow: p.VetoBelow,
			LookSure: p.LookSure, VetoSure: p.VetoSure, VetoFree: p.VetoFree}
		if p.VetoBelow > 0 || p.VetoSure > 0 {
			if faces.Veto, err = sharedVeto(); err != nil {
				return nil, fmt.Errorf("builtin faces: %w", err)
			}
		}
		return &Model{
			faces:   faces,
			recheck: &blazeface.Detector{Net: net, Tile: p.Tile, Overlap: p.Overlap},
			params:  p,
		}, nil
	case DetectorPigo:
		c, err := pigo.NewPigo().Unpack(facefinder)
		if err != nil {
			return nil, fmt.Errorf("builtin faces: unpack cascade: %w", err)
		}
		return &Model{cascade: c, params: p}, nil
	}
	return nil, fmt.Errorf("builtin faces: unknown detector %q (%s or %s)", p.Detector, DetectorBlazeFace, DetectorPigo)
}

// One ONNX Runtime session serves every Model in the process: it is safe for
// concurrent runs, and each session holds the model's weights.
var (
	netOnce sync.Once
	net     *blazeface.Net
	netErr  error
)

func sharedNet() (*blazeface.Net, error) {
	netOnce.Do(func() { net, netErr = blazeface.NewNet() })
	return net, netErr
}

var (
	vetoOnce sync.Once
	veto     *blazeface.Net
	vetoErr  error
)

// sharedVeto is the full-range network that vetoes faces (Params.VetoBelow).
func sharedVeto() (*blazeface.Net, error) {
	vetoOnce.Do(func() { veto, vetoErr = blazeface.NewNetOf(blazeface.FullRange) })
	return veto, vetoErr
}

// NetPixels is how many input pixels BlazeFace has run in this process, over every
// Model (analyses and re-checks share one network): what the face model costs.
func NetPixels() int64 {
	if n, err := sharedNet(); err == nil {
		return n.Pixels()
	}
	return 0
}

// version is what produced this model's predictions.
func (m *Model) version() string {
	if m.faces == nil {
		return PigoVersion
	}
	p, d := m.params, DefaultParams
	switch {
	case p.Dense == d.Dense && p.DenseMin == d.DenseMin && p.LookFrom == d.LookFrom && p.Confirm == d.Confirm &&
		slices.Equal(p.LookTurns, d.LookTurns) && p.TurnFrom == d.TurnFrom && p.Tile == d.Tile && p.Overlap == d.Overlap &&
		p.LookAll == d.LookAll && p.VetoBelow == d.VetoBelow && p.LookSure == d.LookSure && p.VetoSure == d.VetoSure && p.VetoFree == d.VetoFree:
		return BlazeFaceVersion
	case p.Dense > 0:
		return fmt.Sprintf("%s-dense%d-%g-look%g-%g-turns%v-%g-all%v-veto%g-%g-%g-%g", blazeface.Version, p.Dense, p.DenseMin, p.LookFrom, p.Confirm, p.LookTurns, p.TurnFrom, p.LookAll, p.VetoBelow, p.LookSure, p.VetoSure, p.VetoFree)
	}
	return fmt.Sprintf("%s-tiles%d-%g", blazeface.Version, p.Tile, p.Overlap)
}

// Predict detects faces in each instance.
func (m *Model) Predict(ctx context.Context, instances []model.Instance, params model.Parameters) ([]model.Prediction, error) {
	return model.EachImage(ctx, instances, func(data []byte) (model.Prediction, error) { return m.predict(data, params) })
}

// InputLimits gate what the model decodes, wherever the request came from: the
// defaults of a project's prepare step (formats, bytes, pixels, dimensions).
var InputLimits = func() imaging.Limits {
	var p config.Project
	p.ApplyDefaults()
	return imaging.LimitsFor(p.Pipeline.Prepare)
}()

// predict decodes an instance as it is (no resize, no orientation: the caller sent
// what it wants analyzed), through the gate, and detects faces in it. The pixels are
// read once (Gray or RGB), so the lazy Thumbnail serves; Decode would copy the frame
// first.
func (m *Model) predict(data []byte, params model.Parameters) (model.Prediction, error) {
	img, _, err := InputLimits.Thumbnail(data, imaging.MaxSide, imaging.CropNone, false)
	if err != nil {
		return model.Prediction{}, err
	}
	defer img.Close()
	if m.faces == nil {
		pix, w, h, err := img.Gray()
		if err != nil {
			return model.Prediction{}, err
		}
		return m.DetectGray(pix, w, h, params), nil
	}
	rgb, w, h, err := img.RGB()
	if err != nil {
		return model.Prediction{}, err
	}
	return m.detectRGB(rgb, w, h, params)
}

// detectRGB runs the analysis' BlazeFace on 8-bit RGB pixels. It detects down to VerifyConfidence and returns what scores
// below the asked threshold (or past MaxPredictions) as candidates, for the re-check
// (model.Prediction.Candidates). The faces at the threshold and up are the same as
// at that threshold: suppression and nesting keep the stronger of two faces, so
// weaker ones never remove a stronger one, and the second look's threshold only
// filters its result.
func (m *Model) detectRGB(rgb []uint8, w, h int, params model.Parameters) (model.Prediction, error) {
	threshold := max(params.ConfidenceThreshold, MinConfidence)
	faces, err := m.faces.Detect(rgb, w, h, min(threshold, VerifyConfidence))
	if err != nil {
		return model.Prediction{}, err
	}
	pred := emptyPrediction(m.version())
	pred.Candidates = []model.Candidate{}
	for _, f := range faces {
		box := grownBox(f, w, h)
		if f.Score < threshold || params.MaxPredictions > 0 && len(pred.Confidences) >= params.MaxPredictions {
			pred.Candidates = append(pred.Candidates, model.Candidate{DisplayName: Label, Confidence: roundConf(f.Score), BBox: box})
			continue
		}
		addFace(&pred, f.Score, box)
	}
	return pred, nil
}

// prediction turns faces in w×h pixels into the contract's normalised boxes.
func (m *Model) prediction(faces []blazeface.Face, w, h int, params model.Parameters) model.Prediction {
	pred := emptyPrediction(m.version())
	for _, f := range faces {
		if params.MaxPredictions > 0 && len(pred.Confidences) >= params.MaxPredictions {
			break
		}
		addFace(&pred, f.Score, grownBox(f, w, h))
	}
	return pred
}

// grownBox is a face's normalised box [xMin, xMax, yMin, yMax] in w×h pixels.
// BlazeFace's box runs from the brows to the mouth; grown to the whole face
// (forehead, chin), as a face box is expected to be and anonymization needs.
func grownBox(f blazeface.Face, w, h int) [4]float64 {
	cx, cy := (f.X0+f.X1)/2, (f.Y0+f.Y1)/2
	hw, hh := (f.X1-f.X0)*BoxGrowth/2, (f.Y1-f.Y0)*BoxGrowth/2
	return [4]float64{clamp01((cx - hw) / float64(w)), clamp01((cx + hw) / float64(w)), clamp01((cy - hh) / float64(h)), clamp01((cy + hh) / float64(h))}
}

// BoxGrowth scales BlazeFace's boxes about their centre.
const BoxGrowth = 1.3

// MinConfidence is the lowest score BlazeFace reports: below it, the network's
// outputs are mostly background.
const MinConfidence = 0.3

func emptyPrediction(version string) model.Prediction {
	return model.Prediction{IDs: []string{}, DisplayNames: []string{}, Confidences: []float64{}, BBoxes: [][4]float64{}, Version: version}
}

func roundConf(c float64) float64 { return math.Round(c*1e4) / 1e4 }

// addFace appends one face: confidence and normalised [xMin, xMax, yMin, yMax].
func addFace(p *model.Prediction, conf float64, box [4]float64) {
	p.IDs = append(p.IDs, "0")
	p.DisplayNames = append(p.DisplayNames, Label)
	p.Confidences = append(p.Confidences, roundConf(conf))
	p.BBoxes = append(p.BBoxes, box)
}

// VerifySide and VerifyConfidence: the verification pass looks at the anonymized image
// at the model input's size, with a lower threshold than an analysis uses (0.5).
// BlazeFace fires at 0.35–0.55 on the smooth blobs anonymization leaves, which would
// then be anonymized again round after round; what it finds below DenseMin counts
// only when the second look confirms it, and the blobs do not pass.
const (
	VerifySide       = 1024
	VerifyConfidence = 0.35
)

// Faces finds faces in an image already in memory (the verification pass over an
// anonymized image), as normalised boxes: everywhere, or (within not nil) only around
// those areas — after a round changed only them, nothing elsewhere can have changed,
// and scanning a few crops instead of the frame keeps later rounds cheap.
func (m *Model) Faces(img *imaging.Image, within []meta.Box) ([]meta.Detection, error) {
	small, err := img.Fit(VerifySide, imaging.CropNone)
	if err != nil {
		return nil, err
	}
	defer small.Close()
	if m.faces != nil {
		return m.facesRGB(small, within)
	}
	pix, w, h, err := small.Gray()
	if err != nil {
		return nil, err
	}
	params := model.Parameters{ConfidenceThreshold: VerifyConfidence}
	minSize := max(m.params.MinSizePx, int(m.params.MinSizeFrac*float64(min(w, h))))
	var dets []meta.Detection
	add := func(p model.Prediction, ox, oy, sw, sh int) {
		for i, b := range p.BBoxes {
			dets = append(dets, meta.Detection{Label: Label, Confidence: p.Confidences[i], Box: &meta.Box{
				XMin: (float64(ox) + b[0]*float64(sw)) / float64(w), XMax: (float64(ox) + b[1]*float64(sw)) / float64(w),
				YMin: (float64(oy) + b[2]*float64(sh)) / float64(h), YMax: (float64(oy) + b[3]*float64(sh)) / float64(h)}})
		}
	}
	if within == nil {
		add(m.detect(pix, w, h, minSize, params), 0, 0, w, h)
		return dets, nil
	}
	for _, a := range within {
		// The area and half its size around it, at least two smallest faces across.
		mx := max(int((a.XMax-a.XMin)*float64(w)/2), minSize)
		my := max(int((a.YMax-a.YMin)*float64(h)/2), minSize)
		x0, x1 := max(0, int(a.XMin*float64(w))-mx), min(w, int(a.XMax*float64(w))+mx)
		y0, y1 := max(0, int(a.YMin*float64(h))-my), min(h, int(a.YMax*float64(h))+my)
		sw, sh := x1-x0, y1-y0
		if sw < minSize || sh < minSize {
			continue
		}
		sub := make([]uint8, sw*sh)
		for y := range sh {
			copy(sub[y*sw:(y+1)*sw], pix[(y0+y)*w+x0:(y0+y)*w+x1])
		}
		add(m.detect(sub, sw, sh, minSize, params), x0, y0, sw, sh)
	}
	return dets, nil
}

// facesRGB is Faces for BlazeFace, with the re-check's detector. Everywhere: the
// whole-image window and 512 px tiles, not the analysis's dense run. The re-check is
// a second opinion on what anonymization left and on faces of the size a whole
// image shows; the search for the smallest faces at full resolution is the
// analysis's (twice it would double the detector's cost per image). Within areas:
// one look at each area with its surroundings (blazeface.Detector.Around), keeping
// the faces Near an area; a look costs a quarter of a tile, and only the areas
// changed.
func (m *Model) facesRGB(small *imaging.Image, within []meta.Box) ([]meta.Detection, error) {
	rgb, w, h, err := small.RGB()
	if err != nil {
		return nil, err
	}
	var faces []blazeface.Face
	if within == nil {
		faces, err = m.recheck.Detect(rgb, w, h, VerifyConfidence)
	} else {
		areas := make([]blazeface.Area, 0, len(within))
		for _, a := range within {
			areas = append(areas, blazeface.Area{X0: a.XMin * float64(w), Y0: a.YMin * float64(h), X1: a.XMax * float64(w), Y1: a.YMax * float64(h)})
		}
		faces, err = m.recheck.Around(rgb, w, h, areas, VerifyConfidence)
		// Inside a changed area (an anonymized region) a reading counts from
		// transform.RecheckInside up: below it, it is the blocks' blob, which the
		// re-check would ignore, and a second look at it would only cost two more looks.
		faces = slices.DeleteFunc(faces, func(f blazeface.Face) bool {
			return f.Score < transform.RecheckInside && slices.ContainsFunc(areas, func(a blazeface.Area) bool {
				cx, cy := (f.X0+f.X1)/2, (f.Y0+f.Y1)/2
				return cx >= a.X0 && cx < a.X1 && cy >= a.Y0 && cy < a.Y1
			})
		})
	}
	if err != nil {
		return nil, err
	}
	// A face the windows are not sure of (below DenseMin) counts when a second look
	// confirms it, as in the analysis: pixelated blocks read as a face at 0.35–0.55
	// from one view, and each such reading cost a round and filled a good box solid.
	faces, err = m.recheck.Confirmed(rgb, w, h, faces, m.params.DenseMin, VerifyConfidence, m.params.Confirm)
	if err != nil {
		return nil, err
	}
	pred := m.prediction(faces, w, h, model.Parameters{})
	var dets []meta.Detection
	for i, b := range pred.BBoxes {
		box := meta.Box{XMin: b[0], XMax: b[1], YMin: b[2], YMax: b[3]}
		if within != nil && !slices.ContainsFunc(within, func(a meta.Box) bool { return Near(a, box) }) {
			continue
		}
		dets = append(dets, meta.Detection{Label: Label, Confidence: pred.Confidences[i], Box: &box})
	}
	return dets, nil
}

// Version is what produced this model's predictions, for the re-check to know that
// an analysis' candidates came from the same detector (transform.CandidateVerifier).
func (m *Model) Version() string { return m.version() }

// WindowsRun is how many BlazeFace windows the model has run (0 with pigo).
func (m *Model) WindowsRun() int64 {
	if m.faces == nil {
		return 0
	}
	return m.faces.Runs() + m.recheck.Runs()
}

// Near says whether b's centre lies in a grown by half its size on each side: a
// re-check round looks there after only a changed.
func Near(a, b meta.Box) bool {
	mx, my := (a.XMax-a.XMin)/2, (a.YMax-a.YMin)/2
	cx, cy := (b.XMin+b.XMax)/2, (b.YMin+b.YMax)/2
	return cx > a.XMin-mx && cx < a.XMax+mx && cy > a.YMin-my && cy < a.YMax+my
}

// DetectGray runs the cascade on 8-bit luminance pixels.
func (m *Model) DetectGray(pix []uint8, w, h int, params model.Parameters) model.Prediction {
	return m.detect(pix, w, h, max(m.params.MinSizePx, int(m.params.MinSizeFrac*float64(min(w, h)))), params)
}

// detect runs the cascade for faces of minSize pixels and up.
func (m *Model) detect(pix []uint8, w, h, minSize int, params model.Parameters) model.Prediction {
	p := m.params
	short := min(w, h)
	cp := pigo.CascadeParams{
		MinSize:     min(minSize, short),
		MaxSize:     short,
		ShiftFactor: p.ShiftFactor,
		ScaleFactor: p.ScaleFactor,
		ImageParams: pigo.ImageParams{Pixels: pix, Rows: h, Cols: w, Dim: w},
	}
	var dets []pigo.Detection
	for _, a := range p.Angles {
		dets = append(dets, m.cascade.RunCascade(cp, a)...)
	}
	dets = m.cascade.ClusterDetections(dets, p.IoU)
	sort.Slice(dets, func(i, j int) bool { return dets[i].Q > dets[j].Q })
	dets = dropNested(dets)

	pred := emptyPrediction(PigoVersion)
	for _, d := range dets {
		conf := 1 - math.Exp(-float64(d.Q)/p.QScale)
		if conf < params.ConfidenceThreshold {
			continue
		}
		if params.MaxPredictions > 0 && len(pred.Confidences) >= params.MaxPredictions {
			break
		}
		half := float64(d.Scale) / 2
		box := [4]float64{ // [xMin, xMax, yMin, yMax], normalised
			clamp01((float64(d.Col) - half) / float64(w)),
			clamp01((float64(d.Col) + half) / float64(w)),
			clamp01((float64(d.Row) - half) / float64(h)),
			clamp01((float64(d.Row) + half) / float64(h)),
		}
		addFace(&pred, conf, box)
	}
	return pred
}

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }

// dropNested removes detections mostly inside a stronger one: the cascade often
// fires on a face and on part of it at a smaller scale, and one face is one box.
func dropNested(dets []pigo.Detection) []pigo.Detection {
	var kept []pigo.Detection
	for _, d := range dets {
		inside := false
		for _, k := range kept {
			if overlapOfSmaller(d, k) > 0.6 {
				inside = true
				break
			}
		}
		if !inside {
			kept = append(kept, d)
		}
	}
	return kept
}

// overlapOfSmaller is the intersection area over the smaller square's area.
func overlapOfSmaller(a, b pigo.Detection) float64 {
	ha, hb := float64(a.Scale)/2, float64(b.Scale)/2
	ix := math.Max(0, math.Min(float64(a.Col)+ha, float64(b.Col)+hb)-math.Max(float64(a.Col)-ha, float64(b.Col)-hb))
	iy := math.Max(0, math.Min(float64(a.Row)+ha, float64(b.Row)+hb)-math.Max(float64(a.Row)-ha, float64(b.Row)-hb))
	small := math.Min(float64(a.Scale*a.Scale), float64(b.Scale*b.Scale))
	return ix * iy / small
}
