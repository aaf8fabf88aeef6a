package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/review"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// jobsPerOp: the per-job telemetry work is microseconds; each op does many jobs so
// that `make bench`'s few iterations still time it well.
const jobsPerOp = 2000

// BenchmarkTelemetryPerJob is what one job records: a process span and four step
// spans, four step durations, the model call, bytes and pixels, the in-flight gauge
// twice, the outcome, and a drift observation (window 500 against a frozen
// baseline) with its gauges — as the pipeline does it, with the Prometheus exporter
// and an always-on sampler.
func BenchmarkTelemetryPerJob(b *testing.B) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{Project: "demo"})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	r := rand.New(rand.NewPCG(1, 2))
	obs := func() drift.Observation {
		n := []int{0, 1, 1, 2, 3}[r.IntN(5)]
		o := drift.Observation{}
		for range n {
			o.Labels = append(o.Labels, "face")
			o.Confidences = append(o.Confidences, 0.5+0.5*r.Float64())
		}
		return o
	}
	mon := drift.New(0.2, 500, 200)
	for range 700 { // baseline frozen, window full
		mon.Observe(obs())
	}
	tracer := tel.Tracer()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for range jobsPerOp {
			jctx, span := tracer.Start(telemetry.WithKey(ctx, "incoming/a.jpg#1"), "process")
			tel.Inflight(jctx, 1)
			for _, step := range []string{"prepare", "analyze", "transform", "act"} {
				sctx, s := tracer.Start(jctx, step)
				tel.Step(sctx, step, 50*time.Millisecond)
				s.End()
			}
			tel.ModelCall(jctx, "faces", "builtin:faces", "pigo-facefinder/1", 250*time.Millisecond, "")
			tel.Read(jctx, 3_000_000, 12_000_000)
			tel.Drift(jctx, "faces", mon.Observe(obs()))
			tel.Outcome(jctx, config.OutcomeOK)
			tel.Inflight(jctx, -1)
			span.End()
		}
	}
	b.StopTimer()
	perJob := float64(b.Elapsed().Nanoseconds()) / float64(b.N*jobsPerOp)
	b.ReportMetric(perJob/1e6, "ms/image")
	b.ReportMetric(perJob/1e3, "us/job")
	reportPeakRSS(b)
}

// BenchmarkReviewPage renders the review page of a store holding 2000 finished jobs
// with face results, the drift replayed over the last 1000 (window 500, baseline
// frozen from the first 200): what one page view costs the service, images aside.
func BenchmarkReviewPage(b *testing.B) {
	setup(b)
	ctx := context.Background()
	dir := b.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "visionstack.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		key := fmt.Sprintf("incoming/photos/%05d.jpg#1", i)
		c, err := store.Claim(ctx, key, meta.Source{Bucket: "incoming", Object: fmt.Sprintf("photos/%05d.jpg", i), Generation: 1}, "w", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		res := meta.Result{Analysis: "faces", Model: "builtin:faces"}
		for k := range []int{0, 1, 1, 2, 3}[r.IntN(5)] {
			x := 0.1 + 0.25*float64(k)
			res.Detections = append(res.Detections, meta.Detection{Label: "face", Confidence: 0.5 + 0.5*r.Float64(), Box: &meta.Box{XMin: x, XMax: x + 0.2, YMin: 0.2, YMax: 0.5}})
		}
		job := meta.Job{State: meta.StateDone, Format: "jpeg", Width: 4240, Height: 2827, Results: []meta.Result{res},
			Outputs: []meta.Output{{Bucket: "processed", Object: fmt.Sprintf("photos/%05d.jpg", i), Generation: 1}}}
		if err := store.Complete(ctx, c, job); err != nil {
			b.Fatal(err)
		}
	}
	cfg := *project
	cfg.Monitoring.Drift = &config.Drift{Analysis: "faces", Threshold: 0.2, Window: 500, BaselineImages: 200}
	var buckets []blob.Bucket
	for _, n := range []string{"incoming", "processed", "quarantine"} {
		bk, err := local.Open(filepath.Join(dir, n), n)
		if err != nil {
			b.Fatal(err)
		}
		defer bk.Close()
		buckets = append(buckets, bk)
	}
	h := review.New(review.Options{Project: &cfg, Meta: store, Buckets: buckets})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/review/", nil))
		if w.Code != 200 || w.Body.Len() < 10_000 {
			b.Fatalf("page: %d, %d bytes", w.Code, w.Body.Len())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/image")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	reportPeakRSS(b)
}
