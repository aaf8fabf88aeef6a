package drift

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
)

// BaselineName is the metadata store name of an analysis' frozen baseline.
func BaselineName(analysis string) string { return "drift-" + analysis }

// FromConfig turns a project file's expected shares into a baseline (as 1000 images).
func FromConfig(c *config.DriftBaseline) *Baseline {
	const images = 1000
	b := &Baseline{Images: images, Labels: scaledMap(c.Labels, images), Boxes: scaled(c.BoxesPerImage, images),
		Confidence: make([]float64, fineBins), Source: "project file"}
	for i, x := range scaled(c.Confidence, images) { // spread each tenth over its fine bins
		for j := range fineBins / psiBins {
			b.Confidence[i*fineBins/psiBins+j] = x / (fineBins / psiBins)
		}
	}
	return b
}

// ToConfig is the inverse of FromConfig: shares rounded to 3 decimals, ready to
// pin in a project file.
func (b *Baseline) ToConfig() *config.DriftBaseline {
	round := func(xs []float64) []float64 {
		for i, x := range xs {
			xs[i] = float64(int(x*1000+0.5)) / 1000
		}
		return xs
	}
	labels := scaledMap(b.Labels, 1)
	for l, x := range labels {
		labels[l] = round([]float64{x})[0]
	}
	return &config.DriftBaseline{Labels: labels, BoxesPerImage: round(scaled(b.Boxes, 1)), Confidence: round(scaled(coarse(b.Confidence), 1))}
}

// scaled rescales xs to sum to total (all zero stays zero).
func scaled(xs []float64, total float64) []float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	out := make([]float64, len(xs))
	for i, x := range xs {
		if sum > 0 {
			out[i] = x / sum * total
		}
	}
	return out
}

// scaledMap is scaled for named shares.
func scaledMap(m map[string]float64, total float64) map[string]float64 {
	names := slices.Sorted(maps.Keys(m))
	xs := make([]float64, len(names))
	for i, n := range names {
		xs[i] = m[n]
	}
	out := make(map[string]float64, len(m))
	for i, x := range scaled(xs, total) {
		out[names[i]] = x
	}
	return out
}

// ObservationOf is what a finished job says about analysis; false when the job has
// no result for it (not done, or quarantined).
func ObservationOf(j meta.Job, analysis string) (Observation, bool) {
	if j.State != meta.StateDone {
		return Observation{}, false
	}
	for _, r := range j.Results {
		if r.Analysis != analysis {
			continue
		}
		o := Observation{Labels: make([]string, 0, len(r.Detections)), Confidences: make([]float64, 0, len(r.Detections))}
		for _, d := range r.Detections {
			o.Labels = append(o.Labels, d.Label)
			o.Confidences = append(o.Confidences, d.Confidence)
		}
		return o, true
	}
	return Observation{}, false
}

// Point is one image of a replay.
type Point struct {
	Key  string    `json:"key"`
	Time time.Time `json:"time"`
	Report
}

// History is an analysis' drift replayed from the metadata store.
type History struct {
	Analysis       string
	Threshold      float64
	Window         int
	BaselineImages int
	Baseline       *Baseline // nil while fewer than baselineImages images are done
	Persisted      bool      // the baseline is the one frozen in the store
	Points         []Point   // the last images compared with the baseline, oldest first
	Monitor        *Monitor  // fed with everything above: Observe goes on from there
}

// Last is the newest point's report (zero if none).
func (h *History) Last() Report {
	if len(h.Points) == 0 {
		return Report{Collecting: h.Baseline == nil}
	}
	return h.Points[len(h.Points)-1].Report
}

// Load replays an analysis' drift from the store: the baseline is the project
// file's, else the one frozen in the store, else the oldest done images (the same
// images any instance would freeze); then the last limit done images are compared
// with it, so every instance, `visionstack status` and the review page see the same
// figures.
func Load(ctx context.Context, store meta.Store, d config.Drift, limit int) (*History, error) {
	h := &History{Analysis: d.Analysis, Threshold: d.Threshold, Window: d.Window, BaselineImages: d.BaselineImages}
	used := map[string]bool{}
	switch data, err := store.Baseline(ctx, BaselineName(d.Analysis)); {
	case d.Baseline != nil:
		h.Baseline = FromConfig(d.Baseline)
	case err == nil:
		if h.Baseline, err = UnmarshalBaseline(data); err != nil {
			return nil, err
		}
		h.Persisted = true
		// The images it was frozen from are not compared with it.
		first, err := oldest(ctx, store, d.Analysis, h.Baseline.Images)
		if err != nil {
			return nil, err
		}
		for _, k := range first {
			used[k.key] = true
		}
	case errors.Is(err, meta.ErrNotFound):
		m := New(d.Threshold, d.Window, d.BaselineImages)
		first, err := oldest(ctx, store, d.Analysis, d.BaselineImages)
		if err != nil {
			return nil, err
		}
		for _, k := range first {
			m.Observe(k.obs)
			used[k.key] = true
		}
		if h.Baseline = m.Baseline(); h.Baseline == nil {
			h.Monitor = m // still collecting: go on from here
			return h, nil
		}
	default:
		return nil, fmt.Errorf("drift %s: %w", d.Analysis, err)
	}
	h.Monitor = NewFrom(h.Baseline, d.Threshold, d.Window)
	recent, err := store.List(ctx, meta.Filter{State: meta.StateDone, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", d.Analysis, err)
	}
	slices.Reverse(recent)
	for _, j := range recent {
		if o, ok := ObservationOf(j, d.Analysis); ok && !used[j.Key] {
			h.Points = append(h.Points, Point{Key: j.Key, Time: j.Updated, Report: h.Monitor.Observe(o)})
		}
	}
	return h, nil
}

// keyed is one image's observation.
type keyed struct {
	key string
	obs Observation
}

// oldest returns the first n done images of analysis, oldest first: the images a
// baseline is frozen from.
func oldest(ctx context.Context, store meta.Store, analysis string, n int) ([]keyed, error) {
	// Quarantined images are among the oldest too; read a margin past them.
	jobs, err := store.List(ctx, meta.Filter{Oldest: true, Limit: 4 * n})
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", analysis, err)
	}
	var out []keyed
	for _, j := range jobs {
		if o, ok := ObservationOf(j, analysis); ok && len(out) < n {
			out = append(out, keyed{j.Key, o})
		}
	}
	return out, nil
}

// adoptEvery: while collecting, look for a baseline another instance froze every so
// many images.
const adoptEvery = 20

// Tracker is the live monitor of one analysis in a running service: it starts from
// the store's history, freezes the baseline in the store once, and reports every
// image's drift to record (the metric) and the log (a warning when it crosses).
type Tracker struct {
	d      config.Drift
	store  meta.Store
	log    *slog.Logger
	record func(ctx context.Context, analysis string, r Report)

	mu      sync.Mutex
	mon     *Monitor
	last    Report
	drifted bool
}

// Open starts a tracker; record may be nil.
func Open(ctx context.Context, store meta.Store, d config.Drift, log *slog.Logger, record func(context.Context, string, Report)) (*Tracker, error) {
	if log == nil {
		log = slog.Default()
	}
	if record == nil {
		record = func(context.Context, string, Report) {}
	}
	t := &Tracker{d: d, store: store, log: log, record: record}
	h, err := Load(ctx, store, d, d.Window)
	if err != nil {
		return nil, err
	}
	if h.Baseline != nil && !h.Persisted && d.Baseline == nil {
		// The oldest images in the store make the baseline: freeze it for everyone.
		// Only when another instance froze a different one first is the window
		// replayed against that one.
		adopted, err := t.freeze(ctx, h.Baseline)
		if err != nil {
			return nil, err
		}
		if adopted {
			if h, err = Load(ctx, store, d, d.Window); err != nil {
				return nil, err
			}
		}
	}
	t.mon, t.last = h.Monitor, h.Last()
	t.drifted = t.last.Drifted
	if !t.last.Collecting && len(h.Points) > 0 && t.last.Settled(d.Window) {
		record(ctx, d.Analysis, t.last)
	}
	return t, nil
}

// freeze stores b unless another instance froze one first; then it adopts that
// one (adopted is true) and the monitor compares with it.
func (t *Tracker) freeze(ctx context.Context, b *Baseline) (adopted bool, err error) {
	data, err := MarshalBaseline(b)
	if err != nil {
		return false, err
	}
	stored, err := t.store.FreezeBaseline(ctx, BaselineName(t.d.Analysis), data)
	if err != nil {
		return false, fmt.Errorf("drift %s: %w", t.d.Analysis, err)
	}
	if bytes.Equal(stored, data) {
		return false, nil
	}
	_, err = t.adopt(stored)
	return true, err
}

// adopt compares from now on with a baseline another instance froze.
func (t *Tracker) adopt(data []byte) (*Baseline, error) {
	b, err := UnmarshalBaseline(data)
	if err != nil {
		return nil, err
	}
	t.mon = NewFrom(b, t.d.Threshold, t.d.Window)
	return b, nil
}

// Observe takes a finished job.
func (t *Tracker) Observe(ctx context.Context, j meta.Job) {
	o, ok := ObservationOf(j, t.d.Analysis)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.mon.Observe(o)
	switch {
	case r.Froze:
		b := t.mon.Baseline()
		if _, err := t.freeze(ctx, b); err != nil {
			t.log.ErrorContext(ctx, "drift baseline not saved; kept in memory", "analysis", t.d.Analysis, "err", err)
		} else {
			t.log.InfoContext(ctx, "drift baseline frozen", "analysis", t.d.Analysis, "images", b.Images)
		}
		return
	case r.Collecting:
		// Another instance may have frozen the baseline first: adopt it rather than
		// collect a whole baseline of this instance's own.
		if t.mon.Collected()%adoptEvery == 0 {
			if data, err := t.store.Baseline(ctx, BaselineName(t.d.Analysis)); err == nil {
				if b, err := t.adopt(data); err == nil {
					t.log.InfoContext(ctx, "drift baseline frozen by another instance; comparing with it", "analysis", t.d.Analysis, "images", b.Images)
				}
			}
		}
		return
	}
	t.last = r
	if !r.Settled(t.d.Window) {
		return // a few images say little: no metric, no alarm
	}
	t.record(ctx, t.d.Analysis, r)
	switch {
	case r.Drifted && !t.drifted:
		t.log.WarnContext(ctx, "prediction drift: the model's outputs moved away from their baseline", "analysis", t.d.Analysis,
			"psi", round3(r.PSI), "psiLabels", round3(r.PSILabels), "psiBoxes", round3(r.PSIBoxes), "psiConfidence", round3(r.PSIConf),
			"ks", round3(r.KS), "threshold", t.d.Threshold, "window", r.Window)
	case !r.Drifted && t.drifted:
		t.log.InfoContext(ctx, "prediction drift cleared", "analysis", t.d.Analysis, "psi", round3(r.PSI), "threshold", t.d.Threshold)
	}
	t.drifted = r.Drifted
}

// Last is the latest report.
func (t *Tracker) Last() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func round3(x float64) float64 { return float64(int(x*1000+0.5)) / 1000 }
