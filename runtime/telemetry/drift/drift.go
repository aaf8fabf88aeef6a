// Package drift is the early warning for a model whose predictions move away from
// what it did at first: per analysis it keeps the distribution of predicted labels,
// boxes per image and confidences over a sliding window of recent images, compares it
// with a baseline (frozen from the first images, or given) by the population stability
// index, and tests the confidences with a two-sample Kolmogorov–Smirnov statistic.
package drift

import (
	"math"
	"sort"
	"sync"
)

// Observation is one image's output of one analysis.
type Observation struct {
	Labels      []string
	Confidences []float64
}

// Report is the state after an observation.
type Report struct {
	Collecting bool    // the baseline is still being frozen
	PSI        float64 // the largest of the three PSIs below
	PSILabels  float64
	PSIBoxes   float64
	PSIConf    float64
	KS         float64 // Kolmogorov–Smirnov D of confidences, baseline vs window
	Drifted    bool    // PSI > threshold
	Window     int     // images in the window
}

// boxBins are the upper bounds of the boxes-per-image histogram (last: 6 and more).
var boxBins = []int{0, 1, 2, 3, 5, math.MaxInt}

const confBins = 10

// dist is a set of observations summarised as histograms.
type dist struct {
	labels map[string]float64
	boxes  []float64
	conf   []float64
	confs  []float64 // raw, for KS
	n      int
}

func newDist() *dist {
	return &dist{labels: map[string]float64{}, boxes: make([]float64, len(boxBins)), conf: make([]float64, confBins)}
}

func (d *dist) add(o Observation, sign float64) {
	for _, l := range o.Labels {
		d.labels[l] += sign
	}
	n := len(o.Labels)
	for i, ub := range boxBins {
		if n <= ub {
			d.boxes[i] += sign
			break
		}
	}
	for _, c := range o.Confidences {
		d.conf[min(confBins-1, max(0, int(c*confBins)))] += sign
	}
	d.n += int(sign)
}

// Monitor tracks one analysis. It is safe for concurrent use.
type Monitor struct {
	mu        sync.Mutex
	threshold float64
	window    int
	baseN     int
	base      *dist
	recent    []Observation // ring of the window
	cur       *dist
	next      int
}

// New freezes the baseline from the first baselineN images and compares it with the
// last window images; threshold is on the PSI (0.1 early warning, 0.2–0.25 alarm).
func New(threshold float64, window, baselineN int) *Monitor {
	return &Monitor{threshold: threshold, window: window, baseN: baselineN, base: newDist(), cur: newDist()}
}

// Observe adds one image's output and reports the drift.
func (m *Monitor) Observe(o Observation) Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.base.n < m.baseN {
		m.base.add(o, 1)
		m.base.confs = append(m.base.confs, o.Confidences...)
		return Report{Collecting: true}
	}
	if len(m.recent) < m.window {
		m.recent = append(m.recent, o)
	} else {
		m.cur.add(m.recent[m.next], -1)
		m.recent[m.next] = o
		m.next = (m.next + 1) % m.window
	}
	m.cur.add(o, 1)
	var confs []float64
	for _, r := range m.recent {
		confs = append(confs, r.Confidences...)
	}
	r := Report{Window: len(m.recent)}
	r.PSILabels = psiMap(m.base.labels, m.cur.labels)
	r.PSIBoxes = psi(m.base.boxes, m.cur.boxes)
	r.PSIConf = psi(m.base.conf, m.cur.conf)
	r.PSI = max(r.PSILabels, r.PSIBoxes, r.PSIConf)
	r.KS = ks(m.base.confs, confs)
	r.Drifted = len(m.recent) >= m.window/2 && r.PSI > m.threshold
	return r
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
	var e, a []float64
	for k := range keys {
		e = append(e, expected[k])
		a = append(a, actual[k])
	}
	return psi(e, a)
}

// ks is the two-sample Kolmogorov–Smirnov statistic D.
func ks(x, y []float64) float64 {
	if len(x) == 0 || len(y) == 0 {
		return 0
	}
	a, b := append([]float64(nil), x...), append([]float64(nil), y...)
	sort.Float64s(a)
	sort.Float64s(b)
	var i, j int
	var d float64
	for i < len(a) && j < len(b) {
		v := math.Min(a[i], b[j])
		for i < len(a) && a[i] <= v {
			i++
		}
		for j < len(b) && b[j] <= v {
			j++
		}
		d = math.Max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return d
}
