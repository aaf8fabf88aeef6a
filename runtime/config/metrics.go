package config

import "strings"

// Metric is one of the runtime's metrics. The runtime creates its instruments from
// these, the Prometheus endpoint and Cloud Monitoring name them from these, and the
// stack's dashboard and alerts read them from these: no metric name is typed twice.
type Metric struct {
	Name        string // OpenTelemetry instrument name
	Unit        string // UCUM: s, By, 1, or {thing} for counts
	Kind        MetricKind
	Labels      []string // besides "project", on every metric
	Description string
}

// MetricKind is the instrument kind.
type MetricKind string

// Instrument kinds.
const (
	Counter   MetricKind = "counter"
	Histogram MetricKind = "histogram"
	Gauge     MetricKind = "gauge"
	UpDown    MetricKind = "updowncounter"
)

// Outcomes of a job, the values of the outcome label of MetricJobs.
const (
	OutcomeOK           = "ok"            // done
	OutcomeSkipped      = "skipped"       // a duplicate delivery or a re-run: already final
	OutcomeRetried      = "retried"       // transient failure; the message comes back
	OutcomeQuarantined  = "quarantined"   // permanent failure; original quarantined, acked
	OutcomeDeadLettered = "dead_lettered" // the last attempt failed: the dead-letter topic takes it
)

// The runtime's metrics.
var (
	MetricStepDuration = Metric{Name: "visionstack.step.duration", Unit: "s", Kind: Histogram, Labels: []string{"step"},
		Description: "Time of one pipeline step (prepare, analyze, transform, act) for one image"}
	MetricJobs = Metric{Name: "visionstack.jobs", Unit: "{job}", Kind: Counter, Labels: []string{"outcome"},
		Description: "Deliveries handled, by outcome: ok, skipped, retried, quarantined, dead_lettered"}
	MetricModelDuration = Metric{Name: "visionstack.model.duration", Unit: "s", Kind: Histogram, Labels: []string{"analysis", "model", "model_version"},
		Description: "Time of one model call, by the model version that answered (empty when it failed or did not say)"}
	MetricModelErrors = Metric{Name: "visionstack.model.errors", Unit: "{error}", Kind: Counter, Labels: []string{"analysis", "model", "kind"},
		Description: "Failed model calls, by kind: transient (retried), config (the deployment or access: retried, alert-worthy) or permanent (the image)"}
	MetricInflight = Metric{Name: "visionstack.jobs.inflight", Unit: "{job}", Kind: UpDown,
		Description: "Images being processed now"}
	MetricBytes = Metric{Name: "visionstack.processed.bytes", Unit: "By", Kind: Counter,
		Description: "Bytes of original images read"}
	MetricPixels = Metric{Name: "visionstack.processed.pixels", Unit: "{pixel}", Kind: Counter,
		Description: "Pixels of original images decoded"}
	MetricDriftPSI = Metric{Name: "visionstack.drift.psi", Unit: "1", Kind: Gauge, Labels: []string{"analysis", "model_version"},
		Description: "Population stability index of an analysis' predictions, recent window vs the model version's baseline (largest of labels, boxes per image, confidences)"}
	MetricRechecks = Metric{Name: "visionstack.anonymization.rechecks", Unit: "{image}", Kind: Counter, Labels: []string{"result"},
		Description: "Anonymized images looked at again for faces, by result: clean, reanonymized (a face the analysis missed was found and anonymized) or quarantined (a face remained)"}
	MetricDriftKS = Metric{Name: "visionstack.drift.ks", Unit: "1", Kind: Gauge, Labels: []string{"analysis", "model_version"},
		Description: "Kolmogorov-Smirnov D of an analysis' confidences, recent window vs the model version's baseline"}
	MetricPredictionBoxes = Metric{Name: "visionstack.predictions.boxes", Unit: "{detection}", Kind: Histogram, Labels: []string{"analysis", "model_version"},
		Description: "Detections an analysis recorded per image, by model version (shadows' too): what model rollout compares a canary on"}
	MetricPredictionConfidence = Metric{Name: "visionstack.predictions.confidence", Unit: "1", Kind: Histogram, Labels: []string{"analysis", "model_version"},
		Description: "Confidence of each detection recorded, by model version"}
	MetricPredictionLabels = Metric{Name: "visionstack.predictions.labels", Unit: "{detection}", Kind: Counter, Labels: []string{"analysis", "model_version", "label"},
		Description: "Detections recorded, by label and model version"}
)

// Bucket bounds of the prediction histograms: boxes per image 0, 1, 2, 3, 4-5, 6+
// (the drift monitor's bins) and confidence tenths.
var (
	PredictionBoxBounds        = []float64{0.5, 1.5, 2.5, 3.5, 5.5}
	PredictionConfidenceBounds = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
)

// Metrics lists every metric, for documentation and tests.
var Metrics = []Metric{MetricStepDuration, MetricJobs, MetricModelDuration, MetricModelErrors, MetricInflight,
	MetricBytes, MetricPixels, MetricDriftPSI, MetricDriftKS, MetricRechecks,
	MetricPredictionBoxes, MetricPredictionConfidence, MetricPredictionLabels}

// Results of the anonymization re-check, the values of MetricRechecks' result label.
const (
	RecheckClean        = "clean"
	RecheckReanonymized = "reanonymized"
	RecheckQuarantined  = "quarantined"
)

// CloudMetricPrefix is where Cloud Monitoring keeps metrics written through
// OpenTelemetry.
const CloudMetricPrefix = "workload.googleapis.com/"

// CloudType is the metric's type in Cloud Monitoring (filters say metric.type="…").
func (m Metric) CloudType() string { return CloudMetricTypeOf(m.Name) }

// CloudMetricTypeOf maps an instrument name to its Cloud Monitoring type.
func CloudMetricTypeOf(name string) string { return CloudMetricPrefix + name }

// PrometheusName is the metric's name on /metrics: dots become underscores, the
// unit becomes a suffix and counters end in _total (OpenTelemetry's Prometheus
// conventions); histograms add _bucket, _sum and _count to it.
func (m Metric) PrometheusName() string {
	n := strings.ReplaceAll(m.Name, ".", "_")
	suffix := map[string]string{"s": "_seconds", "By": "_bytes"}[m.Unit]
	if m.Unit == "1" && m.Kind == Gauge {
		suffix = "_ratio"
	}
	if !strings.HasSuffix(n, suffix) { // a name that ends in its unit keeps one
		n += suffix
	}
	if m.Kind == Counter {
		n += "_total"
	}
	return n
}

// The monitored resource the runtime's metrics are written on. The Cloud Monitoring
// exporter (opentelemetry-operations-go, internal/resourcemapping) maps a resource
// with service.name and an instance id (faas.instance, which the GCP detector sets on
// Cloud Run) to generic_task, with job = service.name. An alert filter must name it:
// Monitoring refuses a threshold or absence filter without a restriction on
// resource.type.
const CloudMetricResource = "generic_task"

// TelemetryService is the service.name the runtime's telemetry carries for project:
// the generic_task's job label.
func TelemetryService(project string) string { return "visionstack-" + project }

// JobsCollection is the Firestore collection of job records; the stack indexes it.
const JobsCollection = "jobs"
