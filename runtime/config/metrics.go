package config

// Metric names the runtime writes and the stack's dashboard and alerts read: one
// list, so no name is typed twice. Custom metrics live under custom.googleapis.com.
const (
	MetricPrefix        = "custom.googleapis.com/visionstack/"
	MetricStepLatency   = MetricPrefix + "step_latency"    // distribution, label step
	MetricOutcomes      = MetricPrefix + "outcomes"        // counter, label outcome
	MetricModelLatency  = MetricPrefix + "model_latency"   // distribution, label analysis
	MetricDriftPSI      = MetricPrefix + "drift_psi"       // gauge, label analysis
	MetricInflightPixel = MetricPrefix + "inflight_pixels" // gauge
)

// JobsCollection is the Firestore collection of job records; the stack indexes it.
const JobsCollection = "jobs"
