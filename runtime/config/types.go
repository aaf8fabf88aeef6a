// Package config holds the per-project configuration file (projects/<name>/project.yaml):
// its Go types, strict loading, defaults, semantic validation, derived resource names
// and the JSON Schema generated from these types.
//
// It imports nothing else of visionstack so that the runtime, the CLI and the Pulumi
// program can all depend on it.
package config

import "time"

// APIVersion and Kind identify a project file.
const (
	APIVersion = "visionstack/v1"
	Kind       = "Project"
)

// Project is one project.yaml: everything the runtime, the CLI and the stack need.
type Project struct {
	// APIVersion of the file format: visionstack/v1.
	APIVersion string `yaml:"apiVersion" json:"apiVersion" jsonschema:"required,enum=visionstack/v1"`
	// Kind of document: Project.
	Kind string `yaml:"kind" json:"kind" jsonschema:"required,enum=Project"`
	// Name of the project: 3-20 of a-z, 0-9 and '-'; every resource name derives from it.
	Name       string     `yaml:"name" json:"name" jsonschema:"required,pattern=^[a-z][a-z0-9-]*[a-z0-9]$,minLength=3,maxLength=20"`
	GCP        GCP        `yaml:"gcp" json:"gcp" jsonschema:"required"`
	Pipeline   Pipeline   `yaml:"pipeline" json:"pipeline" jsonschema:"required"`
	Delivery   Delivery   `yaml:"delivery,omitempty" json:"delivery,omitempty"`
	Serving    Serving    `yaml:"serving,omitempty" json:"serving,omitempty"`
	Monitoring Monitoring `yaml:"monitoring,omitempty" json:"monitoring,omitempty"`
	// Model is the project's own model, uploaded to Vertex AI and deployed to the
	// project's endpoint by `visionstack model deploy` (analyses use it as vertex:endpoint).
	Model *ModelDeploy `yaml:"model,omitempty" json:"model,omitempty"`
	// Dir is the directory of the project file: onnx:PATH models are found from it.
	Dir string `yaml:"-" json:"-"`
}

// ModelDeploy describes a model for Vertex AI: a serving container (a custom
// container, e.g. the visionstack image running `model serve`), and optionally
// artifacts it loads.
type ModelDeploy struct {
	DisplayName string `yaml:"displayName,omitempty" json:"displayName,omitempty"`
	// Image is the serving container image URI (required).
	Image string `yaml:"image" json:"image" jsonschema:"required"`
	// Args for the container, e.g. [model, serve].
	Args []string `yaml:"args,omitempty" json:"args,omitempty"`
	// ArtifactURI is a gs:// directory of model artifacts. Vertex AI copies it to a
	// bucket of its own and gives the container that copy's URI as AIP_STORAGE_URI
	// (read-only): the container must read AIP_STORAGE_URI, not this URI.
	ArtifactURI  string `yaml:"artifactUri,omitempty" json:"artifactUri,omitempty"`
	PredictRoute string `yaml:"predictRoute,omitempty" json:"predictRoute,omitempty"`
	HealthRoute  string `yaml:"healthRoute,omitempty" json:"healthRoute,omitempty"`
	Port         int    `yaml:"port,omitempty" json:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	MachineType  string `yaml:"machineType,omitempty" json:"machineType,omitempty"`
	MinReplicas  int    `yaml:"minReplicas,omitempty" json:"minReplicas,omitempty" jsonschema:"minimum=1"`
	MaxReplicas  int    `yaml:"maxReplicas,omitempty" json:"maxReplicas,omitempty" jsonschema:"minimum=1"`
	// File is a team's ONNX model (relative to the project file) served by
	// visionstack's own image (Image: the pipeline image): model deploy and rollout
	// upload it, content-addressed, to the stack's model bucket, register it as the
	// model's artifacts and run `model serve --model onnx:FILE` on them.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// ONNX settings of File, as an analysis' onnx block.
	ONNX *ONNX `yaml:"onnx,omitempty" json:"onnx,omitempty"`
	// Accelerator, e.g. NVIDIA_TESLA_T4 (one), for MachineType. Untested here: no GPU
	// serving has been run from this repository.
	Accelerator string `yaml:"accelerator,omitempty" json:"accelerator,omitempty"`
}

// GCP says where the stack lives.
type GCP struct {
	// Project is the Google Cloud project id (6-30 chars).
	Project string `yaml:"project" json:"project" jsonschema:"required,pattern=^[a-z][a-z0-9-]{4\\,28}[a-z0-9]$"`
	// Region for Cloud Run, Vertex AI, buckets and Artifact Registry, e.g. europe-west3.
	Region string `yaml:"region" json:"region" jsonschema:"required"`
	// DeleteProtection of the Firestore database (default true): while on,
	// `visionstack destroy` cannot delete it. Set false, `up`, then destroy.
	DeleteProtection *bool `yaml:"deleteProtection,omitempty" json:"deleteProtection,omitempty"`
}

// Pipeline lists the four steps.
type Pipeline struct {
	Prepare    Prepare     `yaml:"prepare,omitempty" json:"prepare,omitempty"`
	Analyses   []Analysis  `yaml:"analyses" json:"analyses" jsonschema:"required,minItems=1"`
	Transforms []Transform `yaml:"transforms,omitempty" json:"transforms,omitempty"`
	Actions    []Action    `yaml:"actions,omitempty" json:"actions,omitempty"`
}

// Prepare guards against bad input and shapes the image sent to models.
type Prepare struct {
	// MaxBytes rejects larger uploads before reading them (default 20MiB).
	MaxBytes ByteSize `yaml:"maxBytes,omitempty" json:"maxBytes,omitempty"`
	// MaxPixels rejects images whose header declares more pixels (default 50M).
	MaxPixels Count `yaml:"maxPixels,omitempty" json:"maxPixels,omitempty"`
	// MaxDimension rejects images wider or taller than this (default 16384).
	MaxDimension int `yaml:"maxDimension,omitempty" json:"maxDimension,omitempty" jsonschema:"minimum=1"`
	// Formats allowed as input (default jpeg, png, webp).
	Formats []string `yaml:"formats,omitempty" json:"formats,omitempty" jsonschema:"uniqueItems=true"`
	// AutoOrient applies the EXIF orientation (default true).
	AutoOrient *bool `yaml:"autoOrient,omitempty" json:"autoOrient,omitempty"`
	// Resize fits the model input (default longSide 1024).
	Resize Resize `yaml:"resize,omitempty" json:"resize,omitempty"`
	// PayloadLimit caps the encoded model input; Prepare re-encodes to fit
	// (default 1.5MB, the limit of Vertex AI's shared public endpoints).
	PayloadLimit ByteSize `yaml:"payloadLimit,omitempty" json:"payloadLimit,omitempty"`
	// Quality is the first JPEG quality tried for the model input (default 90).
	Quality int `yaml:"quality,omitempty" json:"quality,omitempty" jsonschema:"minimum=1,maximum=100"`
	// PayloadFormat of the model input: jpeg (default), or png, lossless, for a model
	// that must see the pixels it was trained on (an onnx: model compared with its
	// framework); a PNG over payloadLimit falls back to a JPEG.
	PayloadFormat string `yaml:"payloadFormat,omitempty" json:"payloadFormat,omitempty" jsonschema:"enum=jpeg,enum=png"`
}

// Resize says how the model input is sized.
type Resize struct {
	// LongSide is the longest side in pixels; smaller images are not enlarged.
	LongSide int `yaml:"longSide,omitempty" json:"longSide,omitempty" jsonschema:"minimum=16"`
	// Crop to a square: none (default), centre, or attention.
	Crop string `yaml:"crop,omitempty" json:"crop,omitempty" jsonschema:"enum=none,enum=centre,enum=attention"`
}

// Analysis is one model call.
type Analysis struct {
	// Name is referenced by transforms and results (lowercase, digits, '-').
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Model is builtin:faces, vertex:endpoint (this project's endpoint),
	// vertex:projects/P/locations/L/endpoints/E, kserve:URL-of-/v2/models/NAME, or
	// onnx:PATH, a team's own ONNX file (relative to the project file, or gs://…).
	Model string `yaml:"model" json:"model" jsonschema:"required"`
	// Format of the predictions: automl-detection or automl-classification.
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema:"enum=automl-detection,enum=automl-classification"`
	// Shadow is a second model (same forms as Model) called on the same input beside
	// this one: its result is stored with the stable one (results[].shadow) and never
	// acted on. visionstack model compare reports how the two agree.
	Shadow string `yaml:"shadow,omitempty" json:"shadow,omitempty"`
	// Mode sync runs on the synchronous API; async runs on the push path (default async).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=sync,enum=async"`
	// MinConfidence drops weaker predictions (0..1, default 0.5).
	MinConfidence *float64 `yaml:"minConfidence,omitempty" json:"minConfidence,omitempty" jsonschema:"minimum=0,maximum=1"`
	// MaxPredictions per image (default 100). It never caps an analysis a blur
	// transform reads: anonymization asks the model for up to 1000 boxes and uses all.
	MaxPredictions int `yaml:"maxPredictions,omitempty" json:"maxPredictions,omitempty" jsonschema:"minimum=1"`
	// Timeout of one model call (default 30s).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// ONNX says how to run an onnx:PATH model where its file does not: the output
	// format, the pre-processing the model was trained with.
	ONNX *ONNX `yaml:"onnx,omitempty" json:"onnx,omitempty"`
}

// ONNX settings of an analysis whose model is onnx:PATH. The input's name, shape,
// type and layout come from the graph; an Ultralytics export's class names, size and
// task from its metadata.
type ONNX struct {
	// Format of the outputs: auto (read from their shapes and names), classification
	// ([1,C] logits or probabilities), yolov5 ([1,N,5+C]), yolov8 ([1,4+C,N], also
	// v11), ssd (boxes, scores, classes[, count]). Default auto.
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema:"enum=auto,enum=classification,enum=yolov5,enum=yolov8,enum=ssd"`
	// Resize: letterbox (fit, pad; default for detection), stretch, centre-crop
	// (default for classification).
	Resize string `yaml:"resize,omitempty" json:"resize,omitempty" jsonschema:"enum=letterbox,enum=stretch,enum=centre-crop"`
	// Channels: RGB (default) or BGR.
	Channels string `yaml:"channels,omitempty" json:"channels,omitempty" jsonschema:"enum=RGB,enum=BGR"`
	// Scale multiplies pixel values (0..255) first (default 1/255).
	Scale *float64 `yaml:"scale,omitempty" json:"scale,omitempty"`
	// Mean is then subtracted and Std divides, per channel (defaults 0 and 1; ImageNet:
	// mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]).
	Mean []float64 `yaml:"mean,omitempty" json:"mean,omitempty"`
	Std  []float64 `yaml:"std,omitempty" json:"std,omitempty"`
	// Labels name the classes by id, overriding the file's names.
	Labels []string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Width and Height of the input when the graph leaves them open and the file has
	// no imgsz metadata.
	Width  int `yaml:"width,omitempty" json:"width,omitempty"`
	Height int `yaml:"height,omitempty" json:"height,omitempty"`
}

// Transform is exactly one of its fields.
type Transform struct {
	Blur          *Blur          `yaml:"blur,omitempty" json:"blur,omitempty"`
	StripMetadata *StripMetadata `yaml:"stripMetadata,omitempty" json:"stripMetadata,omitempty"`
	Downscale     *Downscale     `yaml:"downscale,omitempty" json:"downscale,omitempty"`
}

// Blur anonymizes the boxes an analysis found.
type Blur struct {
	// Analysis whose boxes are anonymized (a detection analysis).
	Analysis string `yaml:"analysis" json:"analysis" jsonschema:"required"`
	// Padding grows each box by this fraction of its size on every side (default 0.15).
	Padding *float64 `yaml:"padding,omitempty" json:"padding,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Method: pixelate (default; coarse blocks then smoothing, leaves no detectable face),
	// gaussian, or fill (solid box).
	Method string `yaml:"method,omitempty" json:"method,omitempty" jsonschema:"enum=pixelate,enum=gaussian,enum=fill"`
	// Labels limits the blur to these labels (default: all).
	Labels []string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Verify (default true) looks for faces again in the anonymized image, with the
	// built-in detector at a lower threshold, and anonymizes what it finds; an image
	// that cannot be made clean is quarantined ("face remained after anonymization").
	Verify *bool `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// StripMetadata removes EXIF (including GPS), XMP, IPTC and comments.
type StripMetadata struct{}

// Downscale bounds the processed image and encodes it.
type Downscale struct {
	// LongSide of the processed image (default 2048; never enlarges).
	LongSide int `yaml:"longSide,omitempty" json:"longSide,omitempty" jsonschema:"minimum=16"`
	// Quality of the JPEG written (default 85).
	Quality int `yaml:"quality,omitempty" json:"quality,omitempty" jsonschema:"minimum=1,maximum=100"`
}

// Action is exactly one of its fields.
type Action struct {
	Store   *Store   `yaml:"store,omitempty" json:"store,omitempty"`
	Record  *Record  `yaml:"record,omitempty" json:"record,omitempty"`
	Publish *Publish `yaml:"publish,omitempty" json:"publish,omitempty"`
}

// Store writes the processed image to the processed bucket.
type Store struct{}

// Record writes metadata and results (Firestore in the cloud, SQLite locally).
type Record struct{}

// Publish announces the processed image on the downstream topic.
type Publish struct {
	// Topic short name (default "processed"); the stack prefixes it with the project name.
	Topic string `yaml:"topic,omitempty" json:"topic,omitempty"`
}

// Delivery governs retries of the asynchronous path (Pub/Sub and the local queue).
type Delivery struct {
	// MaxAttempts before a message goes to the dead-letter topic (5..100, default 5).
	MaxAttempts int `yaml:"maxAttempts,omitempty" json:"maxAttempts,omitempty" jsonschema:"minimum=5,maximum=100"`
	// MinBackoff between attempts (default 10s).
	MinBackoff Duration `yaml:"minBackoff,omitempty" json:"minBackoff,omitempty"`
	// MaxBackoff between attempts (≤ 600s, default 600s).
	MaxBackoff Duration `yaml:"maxBackoff,omitempty" json:"maxBackoff,omitempty"`
	// AckDeadline is also the push timeout (10s..600s, default 300s).
	AckDeadline Duration `yaml:"ackDeadline,omitempty" json:"ackDeadline,omitempty"`
	// Lease of a job's claim (3s..ackDeadline/2, default 15s), renewed every third of
	// it while the job runs: a worker that dies holds its jobs at most this long.
	Lease Duration `yaml:"lease,omitempty" json:"lease,omitempty"`
}

// Serving sizes the Cloud Run service.
type Serving struct {
	CPU          int    `yaml:"cpu,omitempty" json:"cpu,omitempty" jsonschema:"enum=1,enum=2,enum=4,enum=8"`
	Memory       string `yaml:"memory,omitempty" json:"memory,omitempty" jsonschema:"pattern=^[0-9]+(Mi|Gi)$"`
	Concurrency  int    `yaml:"concurrency,omitempty" json:"concurrency,omitempty" jsonschema:"minimum=1,maximum=1000"`
	MinInstances *int   `yaml:"minInstances,omitempty" json:"minInstances,omitempty" jsonschema:"minimum=0"`
	MaxInstances int    `yaml:"maxInstances,omitempty" json:"maxInstances,omitempty" jsonschema:"minimum=1"`
	// Public allows unauthenticated calls to the sync API (default false).
	Public bool `yaml:"public,omitempty" json:"public,omitempty"`
}

// Monitoring configures alerts and the prediction-drift warning.
type Monitoring struct {
	AlertEmails []string `yaml:"alertEmails,omitempty" json:"alertEmails,omitempty"`
	Drift       *Drift   `yaml:"drift,omitempty" json:"drift,omitempty"`
}

// Drift warns when an analysis' predictions move away from their baseline.
type Drift struct {
	// Analysis to watch; or Analyses for several, each with its own baseline and alert.
	Analysis string   `yaml:"analysis,omitempty" json:"analysis,omitempty"`
	Analyses []string `yaml:"analyses,omitempty" json:"analyses,omitempty"`
	// Threshold on the population stability index (default 0.2).
	Threshold float64 `yaml:"threshold,omitempty" json:"threshold,omitempty" jsonschema:"minimum=0"`
	// Window is the number of recent images compared with the baseline (default 500).
	Window int `yaml:"window,omitempty" json:"window,omitempty" jsonschema:"minimum=10"`
	// BaselineImages: without a baseline here, the first this many images processed
	// are frozen as the baseline, once for all instances, in the metadata store (default 200).
	BaselineImages int `yaml:"baselineImages,omitempty" json:"baselineImages,omitempty" jsonschema:"minimum=10"`
	// Baseline is the expected distribution, instead of freezing the first images.
	// `visionstack status` prints a frozen one in this form, to pin it here.
	Baseline *DriftBaseline `yaml:"baseline,omitempty" json:"baseline,omitempty"`
}

// Each is one Drift per watched analysis (Analysis set, Analyses empty).
func (d *Drift) Each() []Drift {
	if d == nil {
		return nil
	}
	names := d.Analyses
	if len(names) == 0 {
		names = []string{d.Analysis}
	}
	out := make([]Drift, 0, len(names))
	for _, n := range names {
		one := *d
		one.Analysis, one.Analyses = n, nil
		out = append(out, one)
	}
	return out
}

// DriftBaseline is an expected distribution of an analysis' predictions, as shares
// (any positive scale; each list is normalised).
type DriftBaseline struct {
	// Labels: share of each label among detections, e.g. {face: 1}.
	Labels map[string]float64 `yaml:"labels" json:"labels" jsonschema:"required"`
	// BoxesPerImage: share of images with 0, 1, 2, 3, 4-5 and 6+ detections (6 numbers).
	BoxesPerImage []float64 `yaml:"boxesPerImage" json:"boxesPerImage" jsonschema:"required,minItems=6,maxItems=6"`
	// Confidence: share of detections per confidence tenth, 0-0.1 … 0.9-1 (10 numbers).
	Confidence []float64 `yaml:"confidence" json:"confidence" jsonschema:"required,minItems=10,maxItems=10"`
}

// Duration is a time.Duration written as "30s", "5m".
type Duration struct{ time.Duration }
