package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/visionstack/visionstack/internal/syncbuf"
	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	vsmodel "github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/testdata/photos"
)

func newTelemetry(t *testing.T, spans *tracetest.InMemoryExporter) *telemetry.Telemetry {
	t.Helper()
	o := telemetry.Options{Project: "demo"}
	if spans != nil {
		o.SpanExporter = spans
	}
	tel, err := telemetry.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// scrape reads /metrics into metric families.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series finds the sample of metric m whose labels include want (and project=demo).
func series(t *testing.T, fams map[string]*dto.MetricFamily, m config.Metric, want map[string]string) *dto.Metric {
	t.Helper()
	f := fams[m.PrometheusName()]
	if f == nil {
		var names []string
		for n := range fams {
			names = append(names, n)
		}
		t.Fatalf("/metrics lacks %s (%s); has %v", m.PrometheusName(), m.Name, names)
	}
	want["project"] = "demo"
next:
	for _, s := range f.Metric {
		labels := map[string]string{}
		for _, l := range s.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return s
	}
	return nil
}

// value reads one number of the series (0 when there is none).
func value(t *testing.T, fams map[string]*dto.MetricFamily, m config.Metric, labels map[string]string, read func(*dto.Metric) float64) float64 {
	t.Helper()
	if s := series(t, fams, m, labels); s != nil {
		return read(s)
	}
	return 0
}

func histCount(t *testing.T, fams map[string]*dto.MetricFamily, m config.Metric, labels map[string]string) uint64 {
	return uint64(value(t, fams, m, labels, func(s *dto.Metric) float64 { return float64(s.GetHistogram().GetSampleCount()) }))
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, m config.Metric, labels map[string]string) float64 {
	return value(t, fams, m, labels, func(s *dto.Metric) float64 { return s.GetCounter().GetValue() })
}

// After the sample photos, two bad files, one transient model failure and one
// duplicate delivery went through the push endpoint, /metrics has the step
// histograms and the outcome counters with exactly those counts.
func TestMetricsAfterSamples(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{failures: 1, telemetry: newTelemetry(t, nil)})
	ctx := context.Background()
	files, _ := filepath.Glob(filepath.Join(photos.Dir(), "*", "*.*"))
	var good [][]byte
	for _, p := range files {
		if ext := filepath.Ext(p); ext == ".jpg" || ext == ".png" {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			good = append(good, b)
		}
	}
	if len(good) < 8 {
		t.Fatalf("only %d sample photos in %s", len(good), photos.Dir())
	}
	bad := [][]byte{testimg.PNGBomb(50000, 50000), []byte("not an image at all")}
	push := func(name string, data []byte, attempt int) int {
		a, err := f.env.Incoming.Put(ctx, name, data, blob.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(name, a.Generation), attempt))
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("push %s: %d %s", name, resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	var wantBytes float64
	for i, b := range good {
		name := fmt.Sprintf("good/%02d", i)
		if i == 0 { // the model's first call fails: 503, then the redelivery succeeds
			if code := push(name, b, 1); code != http.StatusServiceUnavailable {
				t.Fatalf("first delivery: %d, want 503", code)
			}
			wantBytes += float64(len(b))
			a, _ := f.env.Incoming.Attrs(ctx, name)
			resp, _ := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(name, a.Generation), 2))
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("redelivery: %d", resp.StatusCode)
			}
		} else if code := push(name, b, 1); code != http.StatusNoContent {
			t.Fatalf("push %s: %d", name, code)
		}
		wantBytes += float64(len(b))
	}
	for i, b := range bad {
		push(fmt.Sprintf("bad/%d", i), b, 1)
	}
	// A duplicate delivery of the last photo: acked, counted as skipped, no work.
	a, _ := f.env.Incoming.Attrs(ctx, fmt.Sprintf("good/%02d", len(good)-1))
	post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(a.Name, a.Generation), 2))

	fams := scrape(t, f.http.URL)
	n := uint64(len(good))
	for step, want := range map[string]uint64{"prepare": n + 1 + 2, "analyze": n + 1, "transform": n, "act": n} {
		if got := histCount(t, fams, config.MetricStepDuration, map[string]string{"step": step}); got != want {
			t.Errorf("step %s: %d observations, want %d", step, got, want)
		}
	}
	for outcome, want := range map[string]float64{config.OutcomeOK: float64(n), config.OutcomeRetried: 1,
		config.OutcomeQuarantined: 2, config.OutcomeSkipped: 1} {
		if got := counter(t, fams, config.MetricJobs, map[string]string{"outcome": outcome}); got != want {
			t.Errorf("outcome %s: %v, want %v", outcome, got, want)
		}
	}
	// n answered calls, by the version that answered; the 503 is counted with no version.
	if got := histCount(t, fams, config.MetricModelDuration, map[string]string{"analysis": "faces", "model": "builtin:faces", "model_version": builtin.Version}); got != n {
		t.Errorf("model calls answered by %s: %d, want %d", builtin.Version, got, n)
	}
	if got := counter(t, fams, config.MetricModelErrors, map[string]string{"analysis": "faces", "kind": "transient"}); got != 1 {
		t.Errorf("transient model errors: %v, want 1", got)
	}
	if got := counter(t, fams, config.MetricBytes, map[string]string{}); got != wantBytes {
		t.Errorf("bytes read: %v, want %v", got, wantBytes)
	}
	if got := counter(t, fams, config.MetricPixels, map[string]string{}); got < float64(n)*100*100 {
		t.Errorf("pixels decoded: %v", got)
	}
	if s := series(t, fams, config.MetricInflight, map[string]string{}); s == nil || s.GetGauge().GetValue() != 0 {
		t.Errorf("in flight after the work: %v, want 0", s)
	}
}

// Pub/Sub's deliveryAttempt tells the last attempt of a failing image: counted as
// dead_lettered, the earlier ones as retried.
func TestLastAttemptCountedDeadLettered(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{failures: -1, telemetry: newTelemetry(t, nil)}) // the model always fails
	ctx := context.Background()
	a, err := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 5; attempt++ { // the demo project's delivery.maxAttempts
		resp, _ := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification("up/grace.jpg", a.Generation), attempt))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("attempt %d: %d, want 503", attempt, resp.StatusCode)
		}
	}
	fams := scrape(t, f.http.URL)
	if r, d := counter(t, fams, config.MetricJobs, map[string]string{"outcome": config.OutcomeRetried}),
		counter(t, fams, config.MetricJobs, map[string]string{"outcome": config.OutcomeDeadLettered}); r != 4 || d != 1 {
		t.Fatalf("retried %v, dead_lettered %v; want 4 and 1", r, d)
	}
	if e := counter(t, fams, config.MetricModelErrors, map[string]string{"kind": "transient"}); e != 5 {
		t.Fatalf("transient model errors %v, want 5", e)
	}
}

// scripted answers every call with the next image's detections of a mix.
type scripted struct {
	mu    sync.Mutex
	r     *rand.Rand
	mix   func(r *rand.Rand) (n int, lo, hi float64)
	calls int
}

func (s *scripted) Predict(_ context.Context, in []vsmodel.Instance, _ vsmodel.Parameters) ([]vsmodel.Prediction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	n, lo, hi := s.mix(s.r)
	p := vsmodel.Prediction{IDs: []string{}, DisplayNames: []string{}, Confidences: []float64{}, BBoxes: [][4]float64{}}
	for i := range n {
		x := 0.05 + 0.3*float64(i%3)
		p.IDs = append(p.IDs, "0")
		p.DisplayNames = append(p.DisplayNames, "face")
		p.Confidences = append(p.Confidences, lo+(hi-lo)*s.r.Float64())
		p.BBoxes = append(p.BBoxes, [4]float64{x, x + 0.2, 0.1, 0.4})
	}
	return []vsmodel.Prediction{p}, nil
}

func (s *scripted) set(mix func(r *rand.Rand) (int, float64, float64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mix = mix
}

// A known mix of predictions becomes the baseline; more of the same keeps the drift
// metric under the threshold; a shifted mix (fewer faces, lower confidences) takes it
// over, and only then the log warns, with the image key and trace on the line.
func TestDriftMetricCrossesOnlyForShiftedMix(t *testing.T) {
	known := func(r *rand.Rand) (int, float64, float64) { return []int{1, 1, 2, 3}[r.IntN(4)], 0.75, 0.98 }
	shifted := func(r *rand.Rand) (int, float64, float64) { return []int{0, 0, 0, 1}[r.IntN(4)], 0.5, 0.65 }
	m := &scripted{r: rand.New(rand.NewPCG(7, 9)), mix: known}
	var logs syncbuf.Buffer
	f := newFixtureWith(t, fixtureOptions{model: m, telemetry: newTelemetry(t, nil), logs: &logs,
		project: func(p *config.Project) {
			p.Monitoring.Drift = &config.Drift{Analysis: "faces", Threshold: 0.2, Window: 40, BaselineImages: 60}
		}})
	ctx := context.Background()
	img := testimg.JPEG(96, 64)
	seq := 0
	feed := func(n int) {
		for range n {
			seq++
			name := fmt.Sprintf("drift/%04d.jpg", seq)
			a, err := f.env.Incoming.Put(ctx, name, img, blob.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(name, a.Generation), 1))
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("push %s: %d %s", name, resp.StatusCode, body)
			}
		}
	}
	psi := func() float64 {
		s := series(t, scrape(t, f.http.URL), config.MetricDriftPSI, map[string]string{"analysis": "faces"})
		if s == nil {
			t.Fatal("no drift PSI for analysis faces on /metrics")
		}
		return s.GetGauge().GetValue()
	}
	feed(60) // the baseline
	if b, err := f.env.Meta.Baseline(ctx, "drift-faces"); err != nil || len(b) == 0 {
		t.Fatalf("baseline not frozen in the metadata store after 60 images: %v", err)
	}
	feed(40) // the same mix, a full window
	same := psi()
	if same > 0.2 {
		t.Fatalf("drift PSI %.3f over the threshold on the baseline's own mix", same)
	}
	if strings.Contains(logs.String(), "prediction drift") {
		t.Fatalf("drift warning logged for the baseline's own mix:\n%s", logs.String())
	}
	m.set(shifted)
	feed(40)
	drifted := psi()
	if drifted <= 0.2 {
		t.Fatalf("drift PSI %.3f not over the threshold 0.2 after a shifted mix", drifted)
	}
	t.Logf("drift PSI: same mix %.3f, shifted mix %.3f (threshold 0.2)", same, drifted)

	var warn map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(fmt.Sprint(line["message"]), "prediction drift:") {
			warn = line
		}
	}
	if warn == nil {
		t.Fatalf("no drift warning in the log:\n%s", logs.String())
	}
	if warn["severity"] != "WARNING" || !strings.HasPrefix(fmt.Sprint(warn["key"]), "incoming/drift/") ||
		!strings.HasPrefix(fmt.Sprint(warn[telemetry.LogTrace]), "projects/test-project/traces/") || warn[telemetry.LogSpanID] == nil {
		t.Fatalf("drift warning lacks Cloud Logging fields or the image key: %v", warn)
	}
}

// Each watched analysis has its own baseline and series: when only the plates model
// shifts, only the plates drift crosses the threshold.
func TestDriftPerAnalysis(t *testing.T) {
	known := func(r *rand.Rand) (int, float64, float64) { return []int{1, 1, 2, 3}[r.IntN(4)], 0.75, 0.98 }
	shifted := func(r *rand.Rand) (int, float64, float64) { return []int{0, 0, 0, 1}[r.IntN(4)], 0.5, 0.65 }
	faces := &scripted{r: rand.New(rand.NewPCG(1, 1)), mix: known}
	plates := &scripted{r: rand.New(rand.NewPCG(2, 2)), mix: known}
	const platesModel = "kserve:http://127.0.0.1:1/v2/models/plates"
	f := newFixtureWith(t, fixtureOptions{model: faces, telemetry: newTelemetry(t, nil), models: map[string]vsmodel.Predictor{platesModel: plates},
		project: func(p *config.Project) {
			p.Pipeline.Analyses = append(p.Pipeline.Analyses, config.Analysis{Name: "plates", Model: platesModel, Mode: "async"})
			p.Monitoring.Drift = &config.Drift{Analyses: []string{"faces", "plates"}, Threshold: 0.2, Window: 40, BaselineImages: 60}
		}})
	ctx := context.Background()
	img := testimg.JPEG(96, 64)
	for i := range 140 { // 60 baseline, 40 alike, then 40 where only plates shifts
		if i == 100 {
			plates.set(shifted)
		}
		name := fmt.Sprintf("two/%04d.jpg", i)
		a, err := f.env.Incoming.Put(ctx, name, img, blob.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(name, a.Generation), 1)); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push: %d %s", resp.StatusCode, body)
		}
	}
	fams := scrape(t, f.http.URL)
	psi := map[string]float64{}
	for _, a := range []string{"faces", "plates"} {
		s := series(t, fams, config.MetricDriftPSI, map[string]string{"analysis": a})
		if s == nil {
			t.Fatalf("no drift series for %s", a)
		}
		psi[a] = s.GetGauge().GetValue()
	}
	if psi["faces"] > 0.2 || psi["plates"] <= 0.2 {
		t.Fatalf("drift PSI %v: want faces under 0.2 and plates over", psi)
	}
	for _, a := range []string{"faces", "plates"} {
		if _, err := f.env.Meta.Baseline(ctx, "drift-"+a); err != nil {
			t.Errorf("no baseline frozen for %s: %v", a, err)
		}
	}
}

// One trace from the sync request through the queued task to the push path's steps;
// the push path's log lines carry that trace, the image key and httpRequest.
func TestTraceFollowsSyncToPush(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	var logs syncbuf.Buffer
	f := newFixtureWith(t, fixtureOptions{telemetry: newTelemetry(t, spans), logs: &logs})
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/images:analyze", bytes.NewReader(photo(t, "grace_hopper.jpg")))
	req.Header.Set("Content-Type", "image/jpeg")
	req.Header.Set("traceparent", parent) // as Cloud Run's front end sends it
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("analyze: %v %v", resp, err)
	}
	resp.Body.Close()
	msgs, err := f.env.Queue.Messages(context.Background(), localmode.WorkTopic)
	if err != nil || len(msgs) != 1 || msgs[0].Attributes["traceparent"] == "" {
		t.Fatalf("queued task carries no trace: %+v %v", msgs, err)
	}
	r, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(msgs[0].Data, msgs[0].Attributes, 1))
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %d %s", r.StatusCode, body)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	names := map[string]bool{}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID().String() == traceID {
			names[s.Name] = true
		}
	}
	for _, want := range []string{"POST /v1/images:analyze", "process", "prepare", "analyze", "transform", "act"} {
		if !names[want] {
			t.Errorf("span %q not in the caller's trace; in it: %v", want, names)
		}
	}
	var processed, access bool
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		if line["message"] == "processed" {
			processed = line[telemetry.LogTrace] == "projects/test-project/traces/"+traceID && strings.HasPrefix(fmt.Sprint(line["key"]), "sha256:")
		}
		if hr, ok := line[telemetry.LogHTTPRequest].(map[string]any); ok && hr["requestMethod"] == "POST" && hr["status"] == float64(200) {
			access = line["severity"] == "INFO" && hr["latency"] != nil && line[telemetry.LogTrace] != nil
		}
	}
	if !processed || !access {
		t.Fatalf("log lacks the processed line with trace and key (%v) or the access line with httpRequest (%v):\n%s", processed, access, logs.String())
	}
}
