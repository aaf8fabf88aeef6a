package blazeface

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
)

// Detector finds faces of any size in an RGB image: one window over the whole image
// for large faces, and, when the image is larger than Tile, overlapping Tile-pixel
// windows for small ones (a 20 px face in a 1024 px image is 5 px in a whole-image
// window; the network needs about 16). All windows run as one batch.
type Detector struct {
	Net     *Net
	Tile    int     // window side for small faces, in image pixels; 0: whole image only
	Overlap float64 // of neighbouring tiles, a fraction of Tile: a face on a seam is whole in one
	// Dense, when above 0, replaces the tiles: one dense run over the whole image
	// with its long side at most Dense network pixels (full resolution when it is
	// smaller), beside the whole-image window. Faces it finds need DenseMin or the
	// detection's threshold, the higher: at full resolution the network reads more
	// faces into texture than in a whole-image window.
	Dense    int
	DenseMin float64
	// Confirm, when above 0, gives the dense run's faces scoring from LookFrom up to
	// DenseMin a second look: each cut out with its surroundings, enlarged to
	// LookSize pixels, as it is and mirrored; kept when the two looks score it
	// Confirm or more on average.
	Confirm  float64
	LookFrom float64
	// LookTurns adds pairs of looks (as it is and mirrored) turned by these angles,
	// in degrees: a face tilted past what the network reads upright is confirmed
	// by the pair that turns it back. The best pair's mean counts.
	LookTurns []float64
	TurnFrom  float64
	// LookAll judges every face of the dense detector (judged), the sure ones and
	// the whole-image window's included: a cat's face, a coffee cup's rim or a
	// cell scored 0.55–0.85 from one view, and most no look confirmed, while every
	// true face of the hand-boxed photos and 336 dev-set faces passed the looks
	// (docs/face-model.md "Precision").
	LookAll bool
	// Veto, when set, is MediaPipe's full-range face network (another training,
	// another input size): with LookAll, a face it does not see at all in a look at
	// it (below VetoBelow) is dropped. Of the dev set's true faces the lowest scored
	// 0.029; the lamps and the coins that BlazeFace's looks confirmed, 0.000–0.012.
	Veto      *Net
	VetoBelow float64
	// LookSure and VetoSure: a face the looks score below LookSure counts only when
	// the Veto network scores it VetoSure or more (judged).
	LookSure, VetoSure float64
	// VetoFree: a face the looks score this or more skips the Veto network (0: none
	// does).
	VetoFree float64

	runs atomic.Int64 // windows run, for tests and benchmarks
}

// Runs is how many windows the detector has run.
func (d *Detector) Runs() int64 { return d.runs.Load() }

// window is a square of the image, side pixels from (x, y).
type window struct{ x, y, side float64 }

func (d *Detector) windows(w, h int) []window {
	long := float64(max(w, h))
	ws := []window{{0, 0, long}}
	if d.Tile <= 0 || max(w, h) <= d.Tile {
		return ws
	}
	t := float64(d.Tile)
	step := t * (1 - d.Overlap)
	starts := func(n int) []float64 {
		var s []float64
		for x := 0.0; ; x += step {
			if x+t >= float64(n) {
				s = append(s, max(float64(n)-t, 0))
				break
			}
			s = append(s, x)
		}
		return s
	}
	for _, y := range starts(h) {
		for _, x := range starts(w) {
			ws = append(ws, window{x, y, t})
		}
	}
	return ws
}

// Windows is how many network runs an image of w×h pixels costs, a dense run counted
// as the windows of its area.
func (d *Detector) Windows(w, h int) int {
	if d.Dense > 0 {
		return 1 + d.equivalent(Area{0, 0, float64(w), float64(h)}, d.scale(w, h))
	}
	return len(d.windows(w, h))
}

// scale is the dense run's network pixels an image pixel.
func (d *Detector) scale(w, h int) float64 {
	return math.Min(1, float64(d.Dense)/float64(max(w, h)))
}

// equivalent is how many windows a dense run over a at scale costs.
func (d *Detector) equivalent(a Area, scale float64) int {
	ow := math.Ceil((a.X1-a.X0)*scale/Stride) * Stride
	oh := math.Ceil((a.Y1-a.Y0)*scale/Stride) * Stride
	size := float64(d.Net.Size())
	return int(math.Ceil(ow * oh / (size * size)))
}

// Detect returns the faces scoring at least threshold, in image pixels.
func (d *Detector) Detect(rgb []uint8, w, h int, threshold float64) ([]Face, error) {
	if len(rgb) != w*h*3 {
		return nil, fmt.Errorf("blazeface: %d bytes for %dx%d RGB", len(rgb), w, h)
	}
	if d.Dense > 0 {
		return d.detectDense(rgb, w, h, threshold)
	}
	faces, err := d.run(rgb, w, h, d.windows(w, h), threshold)
	return Suppress(faces, 0.3), err
}

// Area is a rectangle of the image in pixels: [X0, X1) × [Y0, Y1).
type Area struct{ X0, Y0, X1, Y1 float64 }

// run runs the network on the windows and returns what each finds at threshold and
// up, in image pixels (not yet merged).
func (d *Detector) run(rgb []uint8, w, h int, ws []window, threshold float64) ([]Face, error) {
	d.runs.Add(int64(len(ws)))
	size := d.Net.Size()
	n := size * size * 3
	input := getInput(len(ws) * n)
	for i, win := range ws {
		Window(rgb, w, h, win.x, win.y, win.side, input[i*n:(i+1)*n])
	}
	raws, err := d.Net.Run(input, len(ws))
	putInput(input)
	if err != nil {
		return nil, err
	}
	var faces []Face
	for i, r := range raws {
		s := ws[i].side / float64(size)
		for _, f := range r.Decode(threshold) {
			faces = append(faces, Face{
				X0: ws[i].x + f.X0*s, Y0: ws[i].y + f.Y0*s,
				X1: ws[i].x + f.X1*s, Y1: ws[i].y + f.Y1*s, Score: f.Score,
			})
		}
	}
	return faces, nil
}

// detectDense is Detect with Dense: the whole-image window, and a dense run over
// the image.
func (d *Detector) detectDense(rgb []uint8, w, h int, threshold float64) ([]Face, error) {
	long, scale := float64(max(w, h)), d.scale(w, h)
	faces, err := d.run(rgb, w, h, []window{{0, 0, long}}, threshold)
	if err != nil {
		return nil, err
	}
	a := Area{0, 0, float64(w), float64(h)}
	in, ow, oh := DenseArea(rgb, w, h, a, scale)
	d.runs.Add(int64(d.equivalent(a, scale)))
	raw, err := d.Net.RunDense(in, ow, oh)
	putInput(in)
	if err != nil {
		return nil, err
	}
	sureAt := max(threshold, d.DenseMin)
	floor := sureAt
	if d.Confirm > 0 {
		floor = min(floor, d.LookFrom)
	}
	var found []Face
	for _, f := range raw.Decode(floor) {
		found = append(found, Face{X0: f.X0 / scale, Y0: f.Y0 / scale, X1: f.X1 / scale, Y1: f.Y1 / scale, Score: f.Score})
	}
	if d.LookAll && d.Confirm > 0 {
		// The whole-image window's faces and the sure ones are judged too.
		sure, err := d.judgedDistinct(rgb, w, h, append(found, faces...), threshold)
		if err != nil {
			return nil, err
		}
		return dropNested(Suppress(sure, 0.3)), nil
	}
	sure, err := d.Confirmed(rgb, w, h, found, sureAt, threshold, d.Confirm)
	if err != nil {
		return nil, err
	}
	faces = append(faces, sure...)
	return dropNested(Suppress(faces, 0.3)), nil
}

// aroundContext is how many times an area's long side a look Around spans: the area
// and its size again on each side, so a face centred up to half the area's size
// past its edge, as large as the area, is whole in the look.
const aroundContext = 3.0

// Around looks at each area once, with its surroundings (aroundContext), at
// LookSize pixels, and returns the faces scoring threshold or more, in image pixels,
// merged. It is the re-check after only those areas changed: every other pixel is as
// it was, and a look costs a quarter of a window however large the area.
func (d *Detector) Around(rgb []uint8, w, h int, areas []Area, threshold float64) ([]Face, error) {
	if len(rgb) != w*h*3 {
		return nil, fmt.Errorf("blazeface: %d bytes for %dx%d RGB", len(rgb), w, h)
	}
	if len(areas) == 0 {
		return nil, nil
	}
	const n = LookSize * LookSize * 3
	input := getInput(len(areas) * n)
	sides := make([]float64, len(areas))
	for i, a := range areas {
		sides[i] = max(aroundContext*max(a.X1-a.X0, a.Y1-a.Y0), Stride)
		lookAt(rgb, w, h, (a.X0+a.X1)/2, (a.Y0+a.Y1)/2, sides[i], input[i*n:(i+1)*n], LookSize)
	}
	d.countLooks(len(areas), LookSize)
	raws, err := d.Net.RunSized(input, len(areas), LookSize)
	putInput(input)
	if err != nil {
		return nil, err
	}
	var faces []Face
	for i, r := range raws {
		a, s := areas[i], sides[i]/LookSize
		x0, y0 := (a.X0+a.X1)/2-sides[i]/2, (a.Y0+a.Y1)/2-sides[i]/2
		for _, f := range r.Decode(threshold) {
			faces = append(faces, Face{X0: x0 + f.X0*s, Y0: y0 + f.Y0*s, X1: x0 + f.X1*s, Y1: y0 + f.Y1*s, Score: f.Score})
		}
	}
	return dropNested(Suppress(faces, 0.3)), nil
}

// Confirmed keeps the faces scoring sureAt or more, and gives the others a second
// look (confirm: 0 keeps them all); those it confirms stay, at the looks' mean score
// when higher, if that reaches threshold.
func (d *Detector) Confirmed(rgb []uint8, w, h int, faces []Face, sureAt, threshold, confirm float64) ([]Face, error) {
	if confirm <= 0 {
		return faces, nil
	}
	var sure, doubt []Face
	for _, f := range faces {
		if f.Score >= sureAt {
			sure = append(sure, f)
		} else {
			doubt = append(doubt, f)
		}
	}
	looked, err := d.look(rgb, w, h, doubt, confirm)
	if err != nil {
		return nil, err
	}
	for _, f := range looked {
		if f.Score >= threshold {
			sure = append(sure, f)
		}
	}
	return sure, nil
}

// vetoSize is the full-range network's input side; vetoBatch how many faces one run
// of it takes at most.
const (
	vetoSize  = 192
	vetoBatch = 4
)

// judged keeps the faces the second look and the Veto network agree on (LookAll):
// the looks must score Confirm, the full-range network must see the face at all
// (VetoBelow), and a face the looks score below LookSure needs it to see it at
// VetoSure. Measured on the hand-boxed photos, 336 dev-set faces and 42 no-face
// images (docs/face-model.md "Precision"): the looks alone let a cell through at
// 0.58 (full-range 0.31); of the true faces the looks scored below 0.6, the
// full-range network gave 0.36–0.70 to all but one (0.18, on a seed the dev floor
// does not hold); the lowest full-range score of a true face was 0.029.
func (d *Detector) judged(rgb []uint8, w, h int, faces []Face, threshold float64) ([]Face, error) {
	if len(faces) == 0 {
		return nil, nil
	}
	looks, err := d.lookScores(rgb, w, h, faces, max(d.Confirm, d.LookSure))
	if err != nil {
		return nil, err
	}
	// The full-range network looks only at what the looks confirmed and are not sure
	// of (below VetoFree): most of the dense run's candidates fail the looks, and a
	// face the looks score VetoFree or more is one (no object of the no-face set
	// reached 0.66).
	var looked []Face
	var at []int
	for i, f := range faces {
		if looks[i] >= d.Confirm && (d.VetoFree <= 0 || looks[i] < d.VetoFree) {
			looked, at = append(looked, f), append(at, i)
		}
	}
	full, err := d.fullScores(rgb, w, h, looked)
	if err != nil {
		return nil, err
	}
	vetoed := make([]bool, len(faces))
	for k, i := range at {
		vetoed[i] = d.Veto != nil && (full[k] < d.VetoBelow || looks[i] < d.LookSure && full[k] < d.VetoSure)
	}
	var kept []Face
	for i, f := range faces {
		if looks[i] < d.Confirm || vetoed[i] {
			continue
		}
		if f.Score = max(f.Score, looks[i]); f.Score >= threshold {
			kept = append(kept, f)
		}
	}
	return kept, nil
}

// judgedDistinct is judged on the faces that suppression would keep, strongest
// first, in rounds: the whole-image window and the dense run see each face two or
// more times, and judging every copy cost as many looks. A round judges the
// strongest face of each group that overlaps no face kept; a face overlapping only
// ones the judge turned down gets the next round.
func (d *Detector) judgedDistinct(rgb []uint8, w, h int, faces []Face, threshold float64) ([]Face, error) {
	left := slices.Clone(faces)
	sort.SliceStable(left, func(i, j int) bool { return left[i].Score > left[j].Score })
	same := func(f Face, in []Face) bool {
		return slices.ContainsFunc(in, func(k Face) bool { return IoU(f, k) > 0.3 || inside(f, k) })
	}
	var kept []Face
	for len(left) > 0 {
		var round, rest []Face
		for _, f := range left {
			switch {
			case same(f, kept):
			case same(f, round):
				rest = append(rest, f)
			default:
				round = append(round, f)
			}
		}
		ok, err := d.judged(rgb, w, h, round, threshold)
		if err != nil {
			return nil, err
		}
		kept, left = append(kept, ok...), rest
	}
	return kept, nil
}

// fullScores is the Veto network's best score of a face at the centre of a look at
// each face (lookContext times its size across); nil without a Veto network.
func (d *Detector) fullScores(rgb []uint8, w, h int, faces []Face) ([]float64, error) {
	if d.Veto == nil || len(faces) == 0 {
		return nil, nil
	}
	// At most vetoBatch faces a run: the network's activations grow with the batch,
	// and they are what an instance's memory budget must hold on every core.
	if len(faces) > vetoBatch {
		head, err := d.fullScores(rgb, w, h, faces[:vetoBatch])
		if err != nil {
			return nil, err
		}
		tail, err := d.fullScores(rgb, w, h, faces[vetoBatch:])
		return append(head, tail...), err
	}
	const n = vetoSize * vetoSize * 3
	input := getInput(len(faces) * n)
	for i, f := range faces {
		lookAt(rgb, w, h, (f.X0+f.X1)/2, (f.Y0+f.Y1)/2, lookContext*max(f.X1-f.X0, f.Y1-f.Y0), input[i*n:(i+1)*n], vetoSize)
	}
	d.countLooks(len(faces), vetoSize)
	raws, err := d.Veto.Run(input, len(faces))
	putInput(input)
	if err != nil {
		return nil, err
	}
	scores := make([]float64, len(faces))
	for i := range faces {
		scores[i] = centreScore(raws[i], vetoSize, min(d.VetoBelow, 0.01))
	}
	return scores, nil
}

// LookSize is the side of a second look's input; lookContext how many times a face
// box's size it shows around the face's centre.
const (
	LookSize    = 128
	lookContext = 3.0
)

// look gives the faces a second look and returns those it confirms (the looks score
// them confirm or more on average), with the looks' mean score when higher. Faces
// the upright pair leaves between TurnFrom and confirm get the turned pairs too.
func (d *Detector) look(rgb []uint8, w, h int, faces []Face, confirm float64) ([]Face, error) {
	scores, err := d.lookScores(rgb, w, h, faces, confirm)
	if err != nil {
		return nil, err
	}
	var sure []Face
	for i, f := range faces {
		if scores[i] >= confirm {
			f.Score = max(f.Score, scores[i])
			sure = append(sure, f)
		}
	}
	return sure, nil
}

// lookScores is the best pair's mean score of each face: upright, then turned
// (LookTurns) for those the upright pair leaves between TurnFrom and until.
func (d *Detector) lookScores(rgb []uint8, w, h int, faces []Face, until float64) ([]float64, error) {
	scores, err := d.pairs(rgb, w, h, faces, 0)
	if err != nil {
		return nil, err
	}
	var again []int
	for i, s := range scores {
		if s < until && s >= d.TurnFrom {
			again = append(again, i)
		}
	}
	for _, turn := range d.LookTurns {
		if len(again) == 0 {
			break
		}
		sub := make([]Face, len(again))
		for k, i := range again {
			sub[k] = faces[i]
		}
		turnedScores, err := d.pairs(rgb, w, h, sub, turn)
		if err != nil {
			return nil, err
		}
		next := again[:0]
		for k, i := range again {
			scores[i] = max(scores[i], turnedScores[k])
			if scores[i] < until {
				next = append(next, i)
			}
		}
		again = next
	}
	return scores, nil
}

// pairs looks at each face as it is and mirrored, turned by turn degrees, and
// returns the two looks' mean score of the face at the centre.
func (d *Detector) pairs(rgb []uint8, w, h int, faces []Face, turn float64) ([]float64, error) {
	if len(faces) == 0 {
		return nil, nil
	}
	const n = LookSize * LookSize * 3
	input := getInput(2 * len(faces) * n)
	for i, f := range faces {
		side := lookContext * max(f.X1-f.X0, f.Y1-f.Y0)
		cx, cy := (f.X0+f.X1)/2, (f.Y0+f.Y1)/2
		plain, mirrored := input[2*i*n:(2*i+1)*n], input[(2*i+1)*n:(2*i+2)*n]
		if turn == 0 {
			lookAt(rgb, w, h, cx, cy, side, plain, LookSize)
		} else {
			turned(rgb, w, h, cx, cy, side/LookSize, turn*math.Pi/180, plain, LookSize)
		}
		for y := range LookSize {
			for x := range LookSize {
				copy(mirrored[(y*LookSize+x)*3:(y*LookSize+x)*3+3], plain[(y*LookSize+LookSize-1-x)*3:(y*LookSize+LookSize-1-x)*3+3])
			}
		}
	}
	d.countLooks(2*len(faces), LookSize)
	raws, err := d.Net.RunSized(input, 2*len(faces), LookSize)
	putInput(input)
	if err != nil {
		return nil, err
	}
	scores := make([]float64, len(faces))
	for i := range faces {
		for _, r := range raws[2*i : 2*i+2] {
			scores[i] += centreScore(r, LookSize, 0.1) / 2
		}
	}
	return scores, nil
}

// lookAt fills dst (size×size×3) with the square of side side centred on (cx, cy).
func lookAt(rgb []uint8, w, h int, cx, cy, side float64, dst []float32, size int) {
	resample(rgb, w, h, cx-side/2, cy-side/2, side/float64(size), dst, size, size)
}

// countLooks counts n looks of size×size in windows (Runs).
func (d *Detector) countLooks(n, size int) {
	d.runs.Add(int64((n*size*size + Size*Size - 1) / (Size * Size)))
}

// centreScore is the best score, threshold and up, of a face r finds at the centre
// of its size×size input: the face a look was centred on.
func centreScore(r Raw, size int, threshold float64) float64 {
	c := float64(size) / 2
	best := 0.0
	for _, g := range r.Decode(threshold) {
		if inside(Face{X0: c, Y0: c, X1: c, Y1: c}, g) {
			best = max(best, g.Score)
		}
	}
	return best
}

// dropNested keeps one box a face: the whole-image window and the dense run see the
// same face at different sizes, too different for IoU to merge them, and a box whose
// centre lies in a stronger one is that face again (faces is strongest first).
func dropNested(faces []Face) []Face {
	var kept []Face
	for _, f := range faces {
		if !slices.ContainsFunc(kept, func(k Face) bool { return inside(f, k) }) {
			kept = append(kept, f)
		}
	}
	return kept
}

// inside says whether f's centre lies in s.
func inside(f, s Face) bool {
	cx, cy := (f.X0+f.X1)/2, (f.Y0+f.Y1)/2
	return cx >= s.X0 && cx < s.X1 && cy >= s.Y0 && cy < s.Y1
}
