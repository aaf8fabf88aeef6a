// Package modelcompare measures how two versions of a model agree on the same images:
// a shadow's results stored beside the stable ones (analyses[].shadow), image by
// image, and as distributions (the drift monitor's PSI).
package modelcompare

import (
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// MatchIoU is the overlap at which two boxes of the same label are the same object.
const MatchIoU = 0.5

// Agreement of a shadow with the stable model over a set of jobs.
type Agreement struct {
	Analysis     string
	Images       int // jobs with both answers
	ShadowFailed int // jobs whose shadow call failed (not in Images)
	// Detections: matched (same label, IoU ≥ MatchIoU, or the same label for boxless
	// classifications), found by the stable model only, by the shadow only.
	Matched, StableOnly, ShadowOnly int
	SameAnswer                      int // images where every detection matched
	StableVersions, ShadowVersions  map[string]int
	Distance                        drift.Report // stable as expected, shadow as actual
}

// F1 is the detections' agreement: 2·matched / (2·matched + unmatched), 1 when
// neither found anything.
func (a Agreement) F1() float64 {
	d := 2*a.Matched + a.StableOnly + a.ShadowOnly
	if d == 0 {
		return 1
	}
	return float64(2*a.Matched) / float64(d)
}

// Jobs compares the stable and shadow results of analysis in jobs.
func Jobs(jobs []meta.Job, analysis string, threshold float64) Agreement {
	a := Agreement{Analysis: analysis, StableVersions: map[string]int{}, ShadowVersions: map[string]int{}}
	var stable, shadow []drift.Observation
	for _, j := range jobs {
		if j.State != meta.StateDone {
			continue
		}
		for _, r := range j.Results {
			if r.Analysis != analysis || r.Shadow == nil {
				continue
			}
			if r.Shadow.Error != "" {
				a.ShadowFailed++
				continue
			}
			a.Images++
			a.StableVersions[r.ModelVersion]++
			a.ShadowVersions[r.Shadow.ModelVersion]++
			m, so, sh := match(r.Detections, r.Shadow.Detections)
			a.Matched, a.StableOnly, a.ShadowOnly = a.Matched+m, a.StableOnly+so, a.ShadowOnly+sh
			if so == 0 && sh == 0 {
				a.SameAnswer++
			}
			stable = append(stable, observation(r.Detections))
			shadow = append(shadow, observation(r.Shadow.Detections))
		}
	}
	a.Distance = drift.Compare(stable, shadow, threshold)
	return a
}

func observation(ds []meta.Detection) drift.Observation {
	o := drift.Observation{Labels: make([]string, 0, len(ds)), Confidences: make([]float64, 0, len(ds))}
	for _, d := range ds {
		o.Labels, o.Confidences = append(o.Labels, d.Label), append(o.Confidences, d.Confidence)
	}
	return o
}

// match pairs detections greedily, strongest overlap first within a label.
func match(a, b []meta.Detection) (matched, onlyA, onlyB int) {
	used := make([]bool, len(b))
	for _, x := range a {
		best, bestIoU := -1, 0.0
		for i, y := range b {
			if used[i] || x.Label != y.Label {
				continue
			}
			v := 1.0 // classifications: the same label is the same answer
			if x.Box != nil && y.Box != nil {
				v = x.Box.IoU(*y.Box)
			} else if (x.Box == nil) != (y.Box == nil) {
				v = 0
			}
			if v >= MatchIoU && v > bestIoU {
				best, bestIoU = i, v
			}
		}
		if best < 0 {
			onlyA++
			continue
		}
		used[best] = true
		matched++
	}
	return matched, onlyA, len(b) - matched
}
