// Package drift is the early warning for a model whose predictions move away from
// what it did at first: per analysis it keeps the distribution of predicted labels,
// boxes per image and confidences over a sliding window of recent images, compares it
// with a baseline (frozen from the first images, or given in the project file) by the
// population stability index, and tests the confidences with a two-sample
// Kolmogorov–Smirnov statistic.
//
// Confidences are kept in 100 bins rather than raw, so a baseline is a few hundred
// numbers whatever the traffic: small enough for one Firestore document.
package drift

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Observation is one image's output of one analysis.
type Observation struct {
	Labels      []string
	Confidences []float64
	Version     string // the model version that answered (not compared)
}

// Report is the state after an observation.
type Report struct {
	Collecting bool    `json:"collecting"` // the baseline is still being frozen
	Froze      bool    `json:"froze"`      // this observation completed the baseline
	PSI        float64 `json:"psi"`        // the largest of the three PSIs below
	PSILabels  float64 `json:"psiLabels"`
	PSIBoxes   float64 `json:"psiBoxes"`
	PSIConf    float64 `json:"psiConfidence"`
	KS         float64 `json:"ks"`                // Kolmogorov–Smirnov D of confidences, baseline vs window
	Drifted    bool    `json:"drifted"`           // PSI > threshold with at least half a window
	Window     int     `json:"window"`            // images in the window
	Version    string  `json:"version,omitempty"` // the model version compared with its baseline
}

// BoxBins are the upper bounds of the boxes-per-image histogram (last: 6 and more).
var BoxBins = []int{0, 1, 2, 3, 5, math.MaxInt}

// BoxBinNames name BoxBins for people.
var BoxBinNames = []string{"0", "1", "2", "3", "4-5", "6+"}

const (
	fineBins = 100 // confidence resolution kept (KS)
	psiBins  = 10  // confidence bins compared by PSI
)

// Baseline is a frozen distribution: counts, so it can be compared and persisted.
type Baseline struct {
	Images     int                `json:"images"`
	Labels     map[string]float64 `json:"labels"`
	Boxes      []float64          `json:"boxesPerImage"` // per BoxBins
	Confidence []float64          `json:"confidence"`    // 100 bins over 0..1
	Frozen     time.Time          `json:"frozen,omitzero"`
	Source     string             `json:"source,omitempty"` // "first N images" or "project file"
}

// Validate checks a baseline read from a store or a file.
func (b *Baseline) Validate() error {
	if len(b.Boxes) != len(BoxBins) || len(b.Confidence) != fineBins {
		return fmt.Errorf("drift baseline: want %d box bins and %d confidence bins, got %d and %d", len(BoxBins), fineBins, len(b.Boxes), len(b.Confidence))
	}
	var sum float64
	for _, v := range b.Boxes {
		if v < 0 {
			return fmt.Errorf("drift baseline: negative count")
		}
		sum += v
	}
	if sum <= 0 {
		return fmt.Errorf("drift baseline: no images")
	}
	return nil
}

// MarshalBaseline and UnmarshalBaseline are the persisted form.
func MarshalBaseline(b *Baseline) ([]byte, error) { return json.Marshal(b) }

// UnmarshalBaseline reads and validates a persisted baseline.
func UnmarshalBaseline(data []byte) (*Baseline, error) {
	var b Baseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("drift baseline: %w", err)
	}
	if b.Labels == nil {
		b.Labels = map[string]float64{}
	}
	return &b, b.Validate()
}

// dist is a set of observations summarised as histograms.
type dist struct {
	labels map[string]float64
	boxes  []float64
	conf   []float64 // fineBins
	n      int
}

func newDist() *dist {
	return &dist{labels: map[string]float64{}, boxes: make([]float64, len(BoxBins)), conf: make([]float64, fineBins)}
}

func (d *dist) add(o Observation, sign float64) {
	for _, l := range o.Labels {
		d.labels[l] += sign
		if d.labels[l] == 0 {
			delete(d.labels, l)
		}
	}
	n := len(o.Labels)
	for i, ub := range BoxBins {
		if n <= ub {
			d.boxes[i] += sign
			break
		}
	}
	for _, c := range o.Confidences {
		d.conf[min(fineBins-1, max(0, int(c*fineBins)))] += sign
	}
	d.n += int(sign)
}

func (d *dist) baseline() *Baseline {
	b := &Baseline{Images: d.n, Labels: map[string]float64{}, Boxes: append([]float64(nil), d.boxes...), Confidence: append([]float64(nil), d.conf...)}
	for k, v := range d.labels {
		b.Labels[k] = v
	}
	return b
}

func fromBaseline(b *Baseline) *dist {
	d := newDist()
	for k, v := range b.Labels {
		d.labels[k] = v
	}
	copy(d.boxes, b.Boxes)
	copy(d.conf, b.Confidence)
	d.n = b.Images
	return d
}

// Monitor tracks one analysis. It is safe for concurrent use.
type Monitor struct {
	mu        sync.Mutex
	threshold float64
	window    int
	baseN     int
	base      *dist
	frozen    *Baseline
	recent    []Observation // ring of the window
	cur       *dist
	next      int
}

// New freezes the baseline from the first baselineN images and compares it with the
// last window images; threshold is on the PSI (0.1 early warning, 0.2–0.25 alarm).
func New(threshold float64, window, baselineN int) *Monitor {
	return &Monitor{threshold: threshold, window: window, baseN: max(baselineN, 1), base: newDist(), cur: newDist()}
}

// NewFrom compares with a given baseline from the first image on.
func NewFrom(b *Baseline, threshold float64, window int) *Monitor {
	m := New(threshold, window, b.Images)
	m.base, m.frozen = fromBaseline(b), b
	return m
}

// Baseline returns the frozen baseline, or nil while it is being collected.
func (m *Monitor) Baseline() *Baseline {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.frozen
}

// Collected is the number of images in the baseline so far.
func (m *Monitor) Collected() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.base.n
}

// Observe adds one image's output and reports the drift.
func (m *Monitor) Observe(o Observation) Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen == nil {
		m.base.add(o, 1)
		if m.base.n < m.baseN {
			return Report{Collecting: true}
		}
		m.frozen = m.base.baseline()
		m.frozen.Frozen = time.Now().UTC()
		m.frozen.Source = fmt.Sprintf("first %d images", m.base.n)
		return Report{Froze: true}
	}
	if len(m.recent) < m.window {
		m.recent = append(m.recent, o)
	} else {
		m.cur.add(m.recent[m.next], -1)
		m.recent[m.next] = o
		m.next = (m.next + 1) % m.window
	}
	m.cur.add(o, 1)
	r := Report{Window: len(m.recent)}
	r.PSILabels = psiMap(m.base.labels, m.cur.labels)
	r.PSIBoxes = psi(m.base.boxes, m.cur.boxes)
	r.PSIConf = psi(coarse(m.base.conf), coarse(m.cur.conf))
	r.PSI = max(r.PSILabels, r.PSIBoxes, r.PSIConf)
	r.KS = ks(m.base.conf, m.cur.conf)
	r.Drifted = r.Settled(m.window) && r.PSI > m.threshold
	return r
}

// Settled reports whether the window holds enough images (half of window) for its
// figures to mean something; before that they are not exported nor alarmed on.
func (r Report) Settled(window int) bool {
	return !r.Collecting && !r.Froze && r.Window >= (window+1)/2
}

// coarse sums the fine confidence bins into the PSI's bins.
func coarse(fine []float64) []float64 {
	out := make([]float64, psiBins)
	for i, v := range fine {
		out[i*psiBins/len(fine)] += v
	}
	return out
}

// PSI is the population stability index of two histograms (counts), with the
// empty bins smoothed so that a category new in one of them counts but does not
// make the index infinite.
func psi(expected, actual []float64) float64 {
	const eps = 1e-4
	var se, sa float64
	for i := range expected {
		se += expected[i]
		sa += actual[i]
	}
	if se == 0 || sa == 0 {
		return 0
	}
	var out float64
	for i := range expected {
		e := math.Max(expected[i]/se, eps)
		a := math.Max(actual[i]/sa, eps)
		out += (a - e) * math.Log(a/e)
	}
	return out
}

func psiMap(expected, actual map[string]float64) float64 {
	keys := map[string]bool{}
	for k := range expected {
		keys[k] = true
	}
	for k := range actual {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names) // a stable sum, so replays give the same figures
	var e, a []float64
	for _, k := range names {
		e = append(e, expected[k])
		a = append(a, actual[k])
	}
	return psi(e, a)
}

// ks is the two-sample Kolmogorov–Smirnov statistic D on two histograms with the
// same bins: the largest gap between their cumulative distributions.
func ks(x, y []float64) float64 {
	var sx, sy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
	}
	if sx == 0 || sy == 0 {
		return 0
	}
	var cx, cy, d float64
	for i := range x {
		cx += x[i]
		cy += y[i]
		d = math.Max(d, math.Abs(cx/sx-cy/sy))
	}
	return d
}

// Counts is a distribution as histograms: detections by label, images by boxes per
// image (BoxBins), detections by confidence (10 or 100 equal bins over 0..1).
type Counts struct {
	Labels     map[string]float64
	Boxes      []float64
	Confidence []float64
}

func (d *dist) counts() Counts { return Counts{Labels: d.labels, Boxes: d.boxes, Confidence: d.conf} }

// Compare is the distance between two sets of observations, such as a stable model's
// and a shadow's answers on the same images: the PSIs and KS of drift, expected
// taking the baseline's place. Drifted is PSI > threshold.
func Compare(expected, actual []Observation, threshold float64) Report {
	e, a := newDist(), newDist()
	for _, o := range expected {
		e.add(o, 1)
	}
	for _, o := range actual {
		a.add(o, 1)
	}
	return CompareCounts(e.counts(), a.counts(), threshold)
}

// CompareCounts is Compare on histograms (a canary's and the stable version's, read
// back from Cloud Monitoring). Window is the images actual counts.
func CompareCounts(expected, actual Counts, threshold float64) Report {
	var r Report
	for _, n := range actual.Boxes {
		r.Window += int(n)
	}
	r.PSILabels = psiMap(expected.Labels, actual.Labels)
	if len(expected.Boxes) == len(actual.Boxes) {
		r.PSIBoxes = psi(expected.Boxes, actual.Boxes)
	}
	if len(expected.Confidence) == len(actual.Confidence) && len(actual.Confidence)%psiBins == 0 {
		r.PSIConf = psi(coarse(expected.Confidence), coarse(actual.Confidence))
		r.KS = ks(expected.Confidence, actual.Confidence)
	}
	r.PSI = max(r.PSILabels, r.PSIBoxes, r.PSIConf)
	r.Drifted = r.PSI > threshold
	return r
}
