// Package telemetry is the runtime's metrics, traces and log correlation, on
// OpenTelemetry: Prometheus on /metrics everywhere, Google Cloud Monitoring and Cloud
// Trace in the cloud. The metric names come from config.Metrics, which the stack's
// dashboard and alerts read too.
//
// A nil *Telemetry is valid and records nothing, so code paths and tests that do not
// care need not build one.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	mexporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/metric"
	texporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/trace"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	gcpdetector "go.opentelemetry.io/contrib/detectors/gcp"
	"go.opentelemetry.io/otel/attribute"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/api/option"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// Options configure New.
type Options struct {
	// Project is the visionstack project: the "project" label on every metric.
	Project string
	// GCPProject, when set, exports metrics to Cloud Monitoring and traces to Cloud
	// Trace in that project (on Cloud Run: the service's own project).
	GCPProject string
	// ExportInterval of Cloud Monitoring (default 60s; its minimum is 10s).
	ExportInterval time.Duration
	// SpanExporter receives spans too (tests use an in-memory one).
	SpanExporter sdktrace.SpanExporter
	// MonitoringOptions and TraceOptions reach Cloud Monitoring and Cloud Trace
	// elsewhere than Google's endpoints (tests: a local server speaking their API).
	MonitoringOptions, TraceOptions []option.ClientOption
}

// Telemetry holds the providers and the runtime's instruments.
type Telemetry struct {
	project attribute.KeyValue
	tracer  trace.Tracer
	handler http.Handler
	gcp     string

	steps, modelDur               metric.Float64Histogram
	predBoxes, predConf           metric.Float64Histogram
	predLabels                    metric.Int64Counter
	jobs, modelErr, bytes, pixels metric.Int64Counter
	rechecks                      metric.Int64Counter
	inflight                      metric.Int64UpDownCounter
	driftPSI, driftKS             metric.Float64Gauge
	shutdown                      []func(context.Context) error
}

// New builds the providers and instruments.
func New(ctx context.Context, o Options) (_ *Telemetry, err error) {
	t := &Telemetry{project: attribute.String("project", o.Project), gcp: o.GCPProject}
	defer func() {
		if err != nil {
			_ = t.Shutdown(context.Background())
		}
	}()
	res, err := resource.New(ctx, resource.WithDetectors(gcpdetector.NewDetector()),
		resource.WithAttributes(attribute.String("service.name", config.TelemetryService(o.Project))))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	// Metrics: Prometheus on /metrics (own registry: no global state, tests in one
	// process stay apart), plus Cloud Monitoring when in the cloud.
	reg := prometheus.NewRegistry()
	prom, err := promexporter.New(promexporter.WithRegisterer(reg), promexporter.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	t.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom), sdkmetric.WithView(durationBuckets, predictionBuckets(config.MetricPredictionBoxes, config.PredictionBoxBounds),
		predictionBuckets(config.MetricPredictionConfidence, config.PredictionConfidenceBounds))}
	if o.GCPProject != "" {
		exp, err := mexporter.New(mexporter.WithProjectID(o.GCPProject), mexporter.WithMonitoringClientOptions(o.MonitoringOptions...),
			mexporter.WithMetricDescriptorTypeFormatter(func(m metricdata.Metrics) string { return config.CloudMetricTypeOf(m.Name) }))
		if err != nil {
			return nil, fmt.Errorf("cloud monitoring exporter: %w", err)
		}
		interval := o.ExportInterval
		if interval <= 0 {
			interval = time.Minute
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	if err := t.instruments(mp.Meter("github.com/visionstack/visionstack/runtime")); err != nil {
		return nil, err
	}

	// Traces: always sampled locally (IDs tie logs together); in the cloud the
	// caller's decision (Cloud Run's traceparent) is honoured.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))}
	if o.GCPProject != "" {
		exp, err := texporter.New(texporter.WithProjectID(o.GCPProject), texporter.WithTraceClientOptions(o.TraceOptions))
		if err != nil {
			return nil, fmt.Errorf("cloud trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	}
	if o.SpanExporter != nil {
		topts = append(topts, sdktrace.WithSyncer(o.SpanExporter))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	t.shutdown = append(t.shutdown, tp.Shutdown)
	t.tracer = tp.Tracer("github.com/visionstack/visionstack/runtime")
	return t, nil
}

// durationBuckets: image steps take milliseconds to tens of seconds.
var durationBuckets = sdkmetric.NewView(sdkmetric.Instrument{Name: "*.duration", Kind: sdkmetric.InstrumentKindHistogram},
	sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
		Boundaries: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}}})

// predictionBuckets: the prediction histograms keep the drift monitor's bins, so a
// canary's distribution can be compared from Cloud Monitoring alone.
func predictionBuckets(m config.Metric, bounds []float64) sdkmetric.View {
	return sdkmetric.NewView(sdkmetric.Instrument{Name: m.Name, Kind: sdkmetric.InstrumentKindHistogram},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: bounds}})
}

func (t *Telemetry) instruments(m metric.Meter) error {
	var errs []error
	hist := func(d config.Metric) metric.Float64Histogram {
		h, err := m.Float64Histogram(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return h
	}
	counter := func(d config.Metric) metric.Int64Counter {
		c, err := m.Int64Counter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return c
	}
	gauge := func(d config.Metric) metric.Float64Gauge {
		g, err := m.Float64Gauge(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		errs = append(errs, err)
		return g
	}
	t.steps, t.modelDur = hist(config.MetricStepDuration), hist(config.MetricModelDuration)
	t.jobs, t.modelErr = counter(config.MetricJobs), counter(config.MetricModelErrors)
	t.bytes, t.pixels = counter(config.MetricBytes), counter(config.MetricPixels)
	t.rechecks = counter(config.MetricRechecks)
	t.predBoxes, t.predConf = hist(config.MetricPredictionBoxes), hist(config.MetricPredictionConfidence)
	t.predLabels = counter(config.MetricPredictionLabels)
	t.driftPSI, t.driftKS = gauge(config.MetricDriftPSI), gauge(config.MetricDriftKS)
	var err error
	t.inflight, err = m.Int64UpDownCounter(config.MetricInflight.Name, metric.WithUnit(config.MetricInflight.Unit),
		metric.WithDescription(config.MetricInflight.Description))
	errs = append(errs, err)
	return errors.Join(errs...)
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}

// MetricsHandler serves the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.handler
}

// GCPProject is where traces go, for the log's trace field ("" locally).
func (t *Telemetry) GCPProject() string {
	if t == nil {
		return ""
	}
	return t.gcp
}

// noopTracer serves a nil Telemetry, without a new one per request.
var noopTracer = noop.NewTracerProvider().Tracer("")

// Tracer starts spans; a no-op one on a nil Telemetry.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return noopTracer
	}
	return t.tracer
}

func (t *Telemetry) attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append(kv, t.project)...)
}

// Step records one step's duration.
func (t *Telemetry) Step(ctx context.Context, step string, d time.Duration) {
	if t != nil {
		t.steps.Record(ctx, d.Seconds(), t.attrs(attribute.String("step", step)))
	}
}

// Outcome counts one delivery's outcome (config.Outcome*).
func (t *Telemetry) Outcome(ctx context.Context, outcome string) {
	if t != nil {
		t.jobs.Add(ctx, 1, t.attrs(attribute.String("outcome", outcome)))
	}
}

// ModelCall records a model call; kind is "" on success, else transient or permanent.
func (t *Telemetry) ModelCall(ctx context.Context, analysis, model, version string, d time.Duration, kind string) {
	if t == nil {
		return
	}
	a, m := attribute.String("analysis", analysis), attribute.String("model", model)
	t.modelDur.Record(ctx, d.Seconds(), t.attrs(a, m, attribute.String("model_version", version)))
	if kind != "" {
		t.modelErr.Add(ctx, 1, t.attrs(a, m, attribute.String("kind", kind)))
	}
}

// Predictions records what one analysis result says, by the version that answered:
// boxes, confidences and labels, and the same of its shadow.
func (t *Telemetry) Predictions(ctx context.Context, r meta.Result) {
	if t == nil {
		return
	}
	for _, x := range []*meta.Result{&r, r.Shadow} {
		if x == nil || x.Error != "" {
			continue
		}
		a, v := attribute.String("analysis", x.Analysis), attribute.String("model_version", x.ModelVersion)
		t.predBoxes.Record(ctx, float64(len(x.Detections)), t.attrs(a, v))
		for _, d := range x.Detections {
			t.predConf.Record(ctx, d.Confidence, t.attrs(a, v))
			t.predLabels.Add(ctx, 1, t.attrs(a, v, attribute.String("label", d.Label)))
		}
	}
}

// Recheck counts one anonymization re-check by result (config.Recheck…).
func (t *Telemetry) Recheck(ctx context.Context, result string) {
	if t != nil {
		t.rechecks.Add(ctx, 1, t.attrs(attribute.String("result", result)))
	}
}

// Inflight moves the in-flight gauge by delta.
func (t *Telemetry) Inflight(ctx context.Context, delta int64) {
	if t != nil {
		t.inflight.Add(ctx, delta, t.attrs())
	}
}

// Read counts an original read and decoded.
func (t *Telemetry) Read(ctx context.Context, bytes, pixels int64) {
	if t == nil {
		return
	}
	t.bytes.Add(ctx, bytes, t.attrs())
	if pixels > 0 {
		t.pixels.Add(ctx, pixels, t.attrs())
	}
}

// Drift records an analysis' drift report.
func (t *Telemetry) Drift(ctx context.Context, analysis string, r drift.Report) {
	if t == nil {
		return
	}
	a, v := attribute.String("analysis", analysis), attribute.String("model_version", r.Version)
	t.driftPSI.Record(ctx, r.PSI, t.attrs(a, v))
	t.driftKS.Record(ctx, r.KS, t.attrs(a, v))
}
