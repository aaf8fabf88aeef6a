package drift_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
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

// A baseline given in the project file (shares) works as a frozen one: the same mix
// stays under the threshold, a shifted one goes over; ToConfig gives the shares back.
func TestBaselineFromProjectFile(t *testing.T) {
	given := &config.DriftBaseline{Labels: map[string]float64{"face": 1}, BoxesPerImage: []float64{0, 2, 1, 1, 0, 0},
		Confidence: []float64{0, 0, 0, 0, 0, 0, 0, 0.3, 0.4, 0.3}}
	b := drift.FromConfig(given)
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if back := b.ToConfig(); back.BoxesPerImage[1] != 0.5 || back.Confidence[8] != 0.4 || back.Labels["face"] != 1 {
		t.Fatalf("ToConfig(FromConfig(x)) = %+v", back)
	}
	r := rand.New(rand.NewPCG(5, 6))
	m := drift.NewFrom(b, 0.2, 100)
	var same, shifted drift.Report
	for range 100 {
		same = m.Observe(mix(r, []int{1, 1, 2, 3}, 0.7, 1))
	}
	for range 100 {
		shifted = m.Observe(mix(r, []int{0, 0, 1}, 0.5, 0.6))
	}
	if same.Drifted || !shifted.Drifted {
		t.Fatalf("same mix %+v; shifted %+v", same, shifted)
	}
}

// Two instances collect at once: the first to reach baselineImages freezes the
// baseline in the store, the other adopts it without collecting a whole one.
func TestTrackersShareOneBaseline(t *testing.T) {
	ctx, store := context.Background(), openStore(t)
	d := config.Drift{Analysis: "faces", Threshold: 0.2, Window: 50, BaselineImages: 40}
	a, err := drift.Open(ctx, store, d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := drift.Open(ctx, store, d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := func(faces int) meta.Job { return facesJob("", faces) }
	for range 40 {
		a.Observe(ctx, job(1)) // A sees one face per image and freezes that
	}
	if _, err := store.Baseline(ctx, drift.BaselineName("faces", "")); err != nil {
		t.Fatalf("A did not freeze the baseline: %v", err)
	}
	for range 20 {
		b.Observe(ctx, job(3)) // B saw other images; after 20 it adopts A's baseline
	}
	for range 50 {
		b.Observe(ctx, job(3))
	}
	if r := b.Last(); !r.Drifted || r.Window != 50 {
		t.Fatalf("B compares with its own images, not with A's frozen baseline: %+v", r)
	}
}

// Each model version is compared with its own first images: a new version that
// finds more faces by design is not "drift", and the old version keeps its baseline.
func TestBaselinesPerModelVersion(t *testing.T) {
	ctx, store := context.Background(), openStore(t)
	d := config.Drift{Analysis: "faces", Threshold: 0.2, Window: 50, BaselineImages: 40}
	var recorded []drift.Report
	tr, err := drift.Open(ctx, store, d, nil, func(_ context.Context, _ string, r drift.Report) { recorded = append(recorded, r) })
	if err != nil {
		t.Fatal(err)
	}
	job := facesJob
	for range 90 {
		tr.Observe(ctx, job("1", 1))
	}
	for range 90 {
		tr.Observe(ctx, job("2", 3)) // three faces where version 1 saw one
	}
	if r := tr.Last(); r.Drifted || r.Version != "2" || r.Window != 50 {
		t.Fatalf("version 2 against its own baseline: %+v, want settled and not drifted", r)
	}
	for _, v := range []string{"1", "2"} {
		if _, err := store.Baseline(ctx, drift.BaselineName("faces", v)); err != nil {
			t.Errorf("no baseline frozen for version %s: %v", v, err)
		}
	}
	for range 30 {
		tr.Observe(ctx, job("1", 3)) // version 1 now sees three: that is drift for it
	}
	if r := tr.Last(); !r.Drifted || r.Version != "1" {
		t.Fatalf("version 1 seeing three faces: %+v, want drifted against version 1's baseline", r)
	}
	if last := recorded[len(recorded)-1]; last.Version != "1" {
		t.Errorf("the metric carries version %q, want 1", last.Version)
	}
	if name := drift.BaselineName("faces", "projects/p/locations/l/models/m@2"); strings.Contains(strings.TrimPrefix(name, "drift-faces@"), "/") {
		t.Errorf("baseline name %q has a /: not a valid Firestore document id", name)
	}
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// facesJob is a done job whose faces analysis by version found faces faces.
func facesJob(version string, faces int) meta.Job {
	r := meta.Result{Analysis: "faces", ModelVersion: version}
	for range faces {
		r.Detections = append(r.Detections, meta.Detection{Label: "face", Confidence: 0.9})
	}
	return meta.Job{State: meta.StateDone, Results: []meta.Result{r}}
}
