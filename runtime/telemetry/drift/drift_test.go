package drift_test

import (
	"math/rand/v2"
	"testing"

	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// mix draws an image's detections: n faces with confidences in [lo, hi).
func mix(r *rand.Rand, counts []int, lo, hi float64) drift.Observation {
	n := counts[r.IntN(len(counts))]
	o := drift.Observation{}
	for range n {
		o.Labels = append(o.Labels, "face")
		o.Confidences = append(o.Confidences, lo+(hi-lo)*r.Float64())
	}
	return o
}

// A known mix, then the same mix, then a shifted one: the drift warning fires only
// for the shifted one.
func TestDriftCrossesOnlyForShiftedMix(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := drift.New(0.2, 200, 300)
	for range 300 {
		if rep := m.Observe(mix(r, []int{1, 1, 2, 3}, 0.75, 0.98)); !rep.Collecting && !rep.Froze {
			t.Fatal("baseline not collected first")
		}
	}
	var same drift.Report
	for range 200 {
		same = m.Observe(mix(r, []int{1, 1, 2, 3}, 0.75, 0.98))
		if same.Drifted {
			t.Fatalf("drift reported on the baseline's own mix: %+v", same)
		}
	}
	var shifted drift.Report
	for range 200 {
		shifted = m.Observe(mix(r, []int{0, 0, 0, 1}, 0.5, 0.65))
	}
	if !shifted.Drifted || shifted.PSI <= 0.2 || shifted.KS < 0.5 {
		t.Fatalf("shifted mix not reported: %+v", shifted)
	}
	t.Logf("same mix: PSI %.3f KS %.2f; shifted: PSI %.3f (labels %.3f, boxes %.3f, confidences %.3f) KS %.2f",
		same.PSI, same.KS, shifted.PSI, shifted.PSILabels, shifted.PSIBoxes, shifted.PSIConf, shifted.KS)
}
