package drift

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
)

// BaselineName is the metadata store name of an analysis' frozen baseline for a model
// version. Each version is compared with its own first images: a new version's
// outputs may differ by design, and its drift is drift from what it did at first.
// Version "" (results naming none, and baselines frozen before versions were kept)
// keeps the analysis' plain name.
func BaselineName(analysis, version string) string {
	if version == "" {
		return "drift-" + analysis
	}
	return "drift-" + analysis + "@" + url.PathEscape(version) // no "/" in a Firestore document id
}

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
		o := Observation{Labels: make([]string, 0, len(r.Detections)), Confidences: make([]float64, 0, len(r.Detections)), Version: r.ModelVersion}
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
	Version        string // the model version compared (the newest image's)
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

// Load replays an analysis' drift from the store for the model version of its newest
// image: the baseline is the project file's, else the one frozen in the store for
// that version, else that version's oldest done images (the same images any
// instance would freeze); then the last limit done images of the version are
// compared with it, so every instance, `visionstack status` and the review page see
// the same figures.
func Load(ctx context.Context, store meta.Store, d config.Drift, limit int) (*History, error) {
	recent, err := store.List(ctx, meta.Filter{State: meta.StateDone, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", d.Analysis, err)
	}
	version := ""
	for _, j := range recent {
		if o, ok := ObservationOf(j, d.Analysis); ok {
			version = o.Version
			break
		}
	}
	return load(ctx, store, d, version, recent)
}

// load is Load for one version, given the latest done jobs (newest first).
func load(ctx context.Context, store meta.Store, d config.Drift, version string, recent []meta.Job) (*History, error) {
	h := &History{Analysis: d.Analysis, Version: version, Threshold: d.Threshold, Window: d.Window, BaselineImages: d.BaselineImages}
	used := map[string]bool{}
	switch data, err := store.Baseline(ctx, BaselineName(d.Analysis, version)); {
	case d.Baseline != nil:
		h.Baseline = FromConfig(d.Baseline)
	case err == nil:
		if h.Baseline, err = UnmarshalBaseline(data); err != nil {
			return nil, err
		}
		h.Persisted = true
		// The images it was frozen from are not compared with it.
		first, err := oldest(ctx, store, d.Analysis, version, h.Baseline.Images, recent)
		if err != nil {
			return nil, err
		}
		for _, k := range first {
			used[k.key] = true
		}
	case errors.Is(err, meta.ErrNotFound):
		m := New(d.Threshold, d.Window, d.BaselineImages)
		first, err := oldest(ctx, store, d.Analysis, version, d.BaselineImages, recent)
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
	for _, j := range slices.Backward(recent) {
		if o, ok := ObservationOf(j, d.Analysis); ok && o.Version == version && !used[j.Key] {
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

// oldest returns the first n done images of analysis by version, oldest first: the
// images a baseline is frozen from. They are among the store's oldest jobs (the
// first version) or among the recent ones (a version deployed since).
func oldest(ctx context.Context, store meta.Store, analysis, version string, n int, recent []meta.Job) ([]keyed, error) {
	// Quarantined images are among the oldest too; read a margin past them.
	jobs, err := store.List(ctx, meta.Filter{Oldest: true, Limit: 4 * n})
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", analysis, err)
	}
	seen := map[string]bool{}
	var all []meta.Job
	for _, j := range append(jobs, recent...) {
		if !seen[j.Key] {
			seen[j.Key] = true
			all = append(all, j)
		}
	}
	slices.SortStableFunc(all, func(a, b meta.Job) int { return a.Updated.Compare(b.Updated) })
	var out []keyed
	for _, j := range all {
		if o, ok := ObservationOf(j, analysis); ok && o.Version == version && len(out) < n {
			out = append(out, keyed{j.Key, o})
		}
	}
	return out, nil
}

// adoptEvery: while collecting, look for a baseline another instance froze every so
// many images.
const adoptEvery = 20

// Tracker is the live monitor of one analysis in a running service: per model
// version, it starts from the store's history, freezes the version's baseline in the
// store once, and reports every image's drift to record (the metric, labelled with
// the version) and the log (a warning when it crosses).
type Tracker struct {
	d      config.Drift
	store  meta.Store
	log    *slog.Logger
	record func(ctx context.Context, analysis string, r Report)

	mu       sync.Mutex
	versions map[string]*tracked
	current  string // the version of the latest image
}

// tracked is one version's monitor.
type tracked struct {
	version string
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
	t := &Tracker{d: d, store: store, log: log, record: record, versions: map[string]*tracked{}}
	h, err := Load(ctx, store, d, d.Window)
	if err != nil {
		return nil, err
	}
	if _, err := t.start(ctx, h); err != nil {
		return nil, err
	}
	t.current = h.Version
	return t, nil
}

// start tracks h's version from its history, freezing its baseline unless another
// instance did first (then the window is replayed against that one).
func (t *Tracker) start(ctx context.Context, h *History) (*tracked, error) {
	v := &tracked{version: h.Version}
	if h.Baseline != nil && !h.Persisted && t.d.Baseline == nil {
		adopted, err := t.freeze(ctx, v, h.Baseline)
		if err != nil {
			return nil, err
		}
		if adopted {
			recent, err := t.store.List(ctx, meta.Filter{State: meta.StateDone, Limit: t.d.Window})
			if err != nil {
				return nil, err
			}
			if h, err = load(ctx, t.store, t.d, h.Version, recent); err != nil {
				return nil, err
			}
		}
	}
	v.mon, v.last = h.Monitor, h.Last()
	v.last.Version = h.Version
	v.drifted = v.last.Drifted
	if !v.last.Collecting && len(h.Points) > 0 && v.last.Settled(t.d.Window) {
		t.record(ctx, t.d.Analysis, v.last)
	}
	t.versions[h.Version] = v
	return v, nil
}

// freeze stores b as v's baseline unless another instance froze one first; then it
// adopts that one (adopted is true).
func (t *Tracker) freeze(ctx context.Context, v *tracked, b *Baseline) (adopted bool, err error) {
	data, err := MarshalBaseline(b)
	if err != nil {
		return false, err
	}
	stored, err := t.store.FreezeBaseline(ctx, BaselineName(t.d.Analysis, v.version), data)
	if err != nil {
		return false, fmt.Errorf("drift %s: %w", t.d.Analysis, err)
	}
	if bytes.Equal(stored, data) {
		return false, nil
	}
	_, err = t.adopt(v, stored)
	return true, err
}

// adopt compares v from now on with a baseline another instance froze.
func (t *Tracker) adopt(v *tracked, data []byte) (*Baseline, error) {
	b, err := UnmarshalBaseline(data)
	if err != nil {
		return nil, err
	}
	v.mon = NewFrom(b, t.d.Threshold, t.d.Window)
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
	t.current = o.Version
	v := t.versions[o.Version]
	if v == nil {
		// A version this instance has not seen: its own baseline, from the store's
		// history of it (another instance may have frozen it already).
		recent, err := t.store.List(ctx, meta.Filter{State: meta.StateDone, Limit: t.d.Window})
		if err == nil {
			var h *History
			if h, err = load(ctx, t.store, t.d, o.Version, recent); err == nil {
				v, err = t.start(ctx, h)
			}
		}
		if err != nil {
			t.log.ErrorContext(ctx, "drift of a new model version not tracked", "analysis", t.d.Analysis, "version", o.Version, "err", err)
			return
		}
		t.log.InfoContext(ctx, "drift: new model version; comparing it with its own baseline", "analysis", t.d.Analysis, "version", o.Version)
		if slices.ContainsFunc(recent, func(r meta.Job) bool { return r.Key == j.Key }) {
			return // recorded before it was observed: the replay counted it
		}
	}
	r := v.mon.Observe(o)
	r.Version = o.Version
	switch {
	case r.Froze:
		b := v.mon.Baseline()
		if _, err := t.freeze(ctx, v, b); err != nil {
			t.log.ErrorContext(ctx, "drift baseline not saved; kept in memory", "analysis", t.d.Analysis, "version", v.version, "err", err)
		} else {
			t.log.InfoContext(ctx, "drift baseline frozen", "analysis", t.d.Analysis, "version", v.version, "images", b.Images)
		}
		return
	case r.Collecting:
		// Another instance may have frozen the baseline first: adopt it rather than
		// collect a whole baseline of this instance's own.
		if v.mon.Collected()%adoptEvery == 0 {
			if data, err := t.store.Baseline(ctx, BaselineName(t.d.Analysis, v.version)); err == nil {
				if b, err := t.adopt(v, data); err == nil {
					t.log.InfoContext(ctx, "drift baseline frozen by another instance; comparing with it", "analysis", t.d.Analysis, "version", v.version, "images", b.Images)
				}
			}
		}
		return
	}
	v.last = r
	if !r.Settled(t.d.Window) {
		return // a few images say little: no metric, no alarm
	}
	t.record(ctx, t.d.Analysis, r)
	switch {
	case r.Drifted && !v.drifted:
		t.log.WarnContext(ctx, "prediction drift: the model's outputs moved away from their baseline", "analysis", t.d.Analysis, "version", v.version,
			"psi", round3(r.PSI), "psiLabels", round3(r.PSILabels), "psiBoxes", round3(r.PSIBoxes), "psiConfidence", round3(r.PSIConf),
			"ks", round3(r.KS), "threshold", t.d.Threshold, "window", r.Window)
	case !r.Drifted && v.drifted:
		t.log.InfoContext(ctx, "prediction drift cleared", "analysis", t.d.Analysis, "version", v.version, "psi", round3(r.PSI), "threshold", t.d.Threshold)
	}
	v.drifted = r.Drifted
}

// Last is the latest report of the version the latest image came from.
func (t *Tracker) Last() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v := t.versions[t.current]; v != nil {
		return v.last
	}
	return Report{Collecting: true}
}

func round3(x float64) float64 { return float64(int(x*1000+0.5)) / 1000 }
