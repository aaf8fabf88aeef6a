package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	reCache sync.Map // pattern → *regexp.Regexp
)

func matches(pattern, s string) bool {
	re, ok := reCache.Load(pattern)
	if !ok {
		re, _ = reCache.LoadOrStore(pattern, regexp.MustCompile(pattern))
	}
	return re.(*regexp.Regexp).MatchString(s)
}

const (
	patName      = `^[a-z][a-z0-9-]*[a-z0-9]$`
	patGCPProj   = `^[a-z][a-z0-9-]{4,28}[a-z0-9]$`
	patRegion    = `^[a-z]+-[a-z]+[0-9]+$`
	patAnalysis  = `^[a-z][a-z0-9-]{0,62}$`
	patTopicPart = `^[a-z][a-z0-9-]{0,62}$`
)

// ModelKind says which backend serves an analysis.
type ModelKind string

// Model kinds.
const (
	ModelBuiltin ModelKind = "builtin"
	ModelVertex  ModelKind = "vertex"
	ModelKServe  ModelKind = "kserve"
	ModelONNX    ModelKind = "onnx" // a team's own ONNX file, run in-process
)

// ModelRef is a parsed analysis model reference.
type ModelRef struct {
	Kind ModelKind
	// Target: builtin model name; vertex "endpoint" or projects/P/locations/L/endpoints/E;
	// kserve base URL of /v2/models/NAME.
	Target string
}

// BuiltinModels are the models shipped in the binary.
var BuiltinModels = []string{"faces"}

// ParseModel reads "builtin:faces", "vertex:endpoint", "vertex:projects/P/locations/L/endpoints/E",
// "kserve:http(s)://host/v2/models/NAME" or "onnx:PATH" (relative to the project
// file's directory, or gs://BUCKET/OBJECT).
func ParseModel(s string) (ModelRef, error) {
	kind, target, ok := strings.Cut(s, ":")
	if !ok || target == "" {
		return ModelRef{}, fmt.Errorf("model %q: write builtin:faces, vertex:endpoint, vertex:projects/P/locations/L/endpoints/E, kserve:https://host/v2/models/NAME or onnx:PATH", s)
	}
	ref := ModelRef{Kind: ModelKind(kind), Target: target}
	switch ref.Kind {
	case ModelBuiltin:
		for _, m := range BuiltinModels {
			if target == m {
				return ref, nil
			}
		}
		return ref, fmt.Errorf("model %q: no built-in model %q; built-in models: %s", s, target, strings.Join(BuiltinModels, ", "))
	case ModelVertex:
		if target == "endpoint" || matches(`^projects/[^/]+/locations/[a-z0-9-]+/endpoints/[0-9A-Za-z_-]+$`, target) {
			return ref, nil
		}
		return ref, fmt.Errorf("model %q: write vertex:endpoint for this project's endpoint or vertex:projects/P/locations/L/endpoints/E", s)
	case ModelKServe:
		u, err := url.Parse(target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !matches(`/v2/models/[^/]+$`, u.Path) {
			return ref, fmt.Errorf("model %q: write kserve:https://host/v2/models/NAME (the Open Inference v2 model URL)", s)
		}
		return ref, nil
	case ModelONNX:
		if strings.HasPrefix(target, "gs://") {
			if b, o, _ := strings.Cut(strings.TrimPrefix(target, "gs://"), "/"); b == "" || o == "" {
				return ref, fmt.Errorf("model %q: write onnx:gs://BUCKET/OBJECT", s)
			}
			return ref, nil
		}
		if strings.Contains(target, "://") {
			return ref, fmt.Errorf("model %q: an ONNX file is a path (relative to the project file) or gs://BUCKET/OBJECT", s)
		}
		return ref, nil
	}
	return ref, fmt.Errorf("model %q: unknown kind %q; use builtin, vertex, kserve or onnx", s, kind)
}

// onnx checks an analysis' onnx settings: only beside an onnx: model, each value one
// the runtime knows.
func (v *validator) onnx(path string, a Analysis) {
	o := a.ONNX
	if o == nil {
		return
	}
	if ref, err := ParseModel(a.Model); err == nil && ref.Kind != ModelONNX {
		v.add(path+".onnx", "onnx settings are for an onnx:PATH model; this analysis uses %s: remove them", a.Model)
		return
	}
	if !slices.Contains(ONNXFormats, o.Format) {
		v.add(path+".onnx.format", "%q: use one of %s", o.Format, strings.Join(ONNXFormats, ", "))
	}
	if !slices.Contains([]string{"letterbox", "stretch", "centre-crop", ""}, o.Resize) {
		v.add(path+".onnx.resize", "%q: use letterbox, stretch or centre-crop", o.Resize)
	}
	if o.Channels != "" && o.Channels != "RGB" && o.Channels != "BGR" {
		v.add(path+".onnx.channels", "%q: use RGB or BGR", o.Channels)
	}
	if o.Scale != nil && *o.Scale <= 0 {
		v.add(path+".onnx.scale", "%v: pixel values are multiplied by it: give a positive number (1/255 = 0.00392156862745098)", *o.Scale)
	}
	for _, f := range []struct {
		name string
		v    []float64
	}{{"mean", o.Mean}, {"std", o.Std}} {
		if len(f.v) != 0 && len(f.v) != 3 {
			v.add(path+".onnx."+f.name, "%d values: give three, one per channel in the channel order", len(f.v))
		}
	}
	for _, s := range o.Std {
		if s == 0 {
			v.add(path+".onnx.std", "0 divides by zero")
		}
	}
	if (o.Width == 0) != (o.Height == 0) || o.Width < 0 || o.Height < 0 {
		v.add(path+".onnx", "width %d, height %d: give both (the input's size when the graph leaves it open) or neither", o.Width, o.Height)
	}
	if o.Format == "classification" && a.Format != "automl-classification" {
		v.add(path+".format", "onnx.format classification makes classifications: set format: automl-classification")
	}
	if (o.Format == "yolov5" || o.Format == "yolov8" || o.Format == "ssd") && a.Format != "automl-detection" {
		v.add(path+".format", "onnx.format %s makes detections: set format: automl-detection or leave it out", o.Format)
	}
}

// ONNXFormats are the output formats of an onnx: model ("auto": from the graph).
var ONNXFormats = []string{"auto", "classification", "yolov5", "yolov8", "ssd"}

// Validate checks meaning after defaults; each problem has a path and says how to fix.
func (p *Project) Validate() Problems {
	var v validator
	if p.APIVersion != APIVersion {
		v.add("apiVersion", "must be %q", APIVersion)
	}
	if p.Kind != Kind {
		v.add("kind", "must be %q", Kind)
	}
	v.name(p.Name)
	if !matches(patGCPProj, p.GCP.Project) {
		v.add("gcp.project", "%q is not a Google Cloud project id: 6-30 characters, lowercase letters, digits and '-', starting with a letter", p.GCP.Project)
	}
	if !matches(patRegion, p.GCP.Region) {
		v.add("gcp.region", "%q is not a region: write one such as europe-west3 or us-central1", p.GCP.Region)
	}
	if matches(patName, p.Name) && matches(patGCPProj, p.GCP.Project) {
		for _, msg := range p.Names().Problems() {
			v.add("name", "%s: shorten the project name", msg)
		}
	}
	v.prepare(&p.Pipeline.Prepare)
	analyses := v.analyses(p.Pipeline.Analyses)
	v.transforms(p.Pipeline.Transforms, analyses)
	v.actions(p.Pipeline.Actions)
	v.delivery(&p.Delivery)
	v.serving(&p.Serving)
	v.monitoring(&p.Monitoring, analyses)
	if m := p.Model; m != nil {
		if m.Image == "" || strings.ContainsAny(m.Image, " \t") {
			v.add("model.image", "set the serving container image URI, e.g. europe-west3-docker.pkg.dev/P/REPO/visionstack@sha256:…")
		}
		if m.ArtifactURI != "" && !strings.HasPrefix(m.ArtifactURI, "gs://") {
			v.add("model.artifactUri", "%q: write a gs:// URI", m.ArtifactURI)
		}
		if m.MaxReplicas < m.MinReplicas {
			v.add("model.maxReplicas", "%d: must be at least minReplicas (%d)", m.MaxReplicas, m.MinReplicas)
		}
		if !strings.HasPrefix(m.PredictRoute, "/") || !strings.HasPrefix(m.HealthRoute, "/") {
			v.add("model", "predictRoute and healthRoute are paths starting with '/'")
		}
	}
	return v.probs
}

type validator struct{ probs Problems }

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) name(n string) {
	switch {
	case n == "":
		v.add("name", "is required: lowercase letters, digits and '-', %d-%d characters", MinNameLen, MaxNameLen)
	case len(n) < MinNameLen || len(n) > MaxNameLen:
		v.add("name", "%q has %d characters; use %d-%d so every derived GCP name stays legal", n, len(n), MinNameLen, MaxNameLen)
	case !matches(patName, n) || strings.Contains(n, "--"):
		v.add("name", "%q: use lowercase letters, digits and single '-', start with a letter, end with a letter or digit", n)
	case strings.HasPrefix(n, "goog") || strings.Contains(n, "google"):
		v.add("name", "%q: Cloud Storage refuses bucket names that start with \"goog\" or contain \"google\"; pick another", n)
	}
}

func (v *validator) prepare(pr *Prepare) {
	const path = "pipeline.prepare"
	if pr.MaxBytes <= 0 {
		v.add(path+".maxBytes", "must be positive, e.g. 20MiB")
	}
	if pr.MaxPixels <= 0 {
		v.add(path+".maxPixels", "must be positive, e.g. 50M")
	}
	if pr.MaxDimension <= 0 || pr.MaxDimension > 65535 {
		v.add(path+".maxDimension", "must be 1-65535 (JPEG's limit), e.g. 16384")
	}
	for i, f := range pr.Formats {
		if f != "jpeg" && f != "png" && f != "webp" {
			v.add(fmt.Sprintf("%s.formats[%d]", path, i), "%q is not supported: use jpeg, png or webp", f)
		}
	}
	if pr.Resize.LongSide < 16 {
		v.add(path+".resize.longSide", "must be at least 16 pixels, e.g. 1024")
	}
	switch pr.Resize.Crop {
	case "none", "centre", "attention":
	default:
		v.add(path+".resize.crop", "%q: use none, centre or attention", pr.Resize.Crop)
	}
	if pr.PayloadLimit < 16<<10 {
		v.add(path+".payloadLimit", "must be at least 16KiB, e.g. 1.5MB")
	}
	if pr.Quality < 1 || pr.Quality > 100 {
		v.add(path+".quality", "must be 1-100, e.g. 90")
	}
	if pr.PayloadFormat != "jpeg" && pr.PayloadFormat != "png" {
		v.add(path+".payloadFormat", "%q: use jpeg (default) or png (lossless)", pr.PayloadFormat)
	}
}

// analyses validates and returns the analyses by name.
func (v *validator) analyses(as []Analysis) map[string]*Analysis {
	byName := map[string]*Analysis{}
	if len(as) == 0 {
		v.add("pipeline.analyses", "add at least one analysis, e.g. {name: faces, model: builtin:faces, mode: sync}")
	}
	for i := range as {
		a := &as[i]
		path := fmt.Sprintf("pipeline.analyses[%d]", i)
		if !matches(patAnalysis, a.Name) {
			v.add(path+".name", "%q: use lowercase letters, digits and '-', starting with a letter", a.Name)
		} else if byName[a.Name] != nil {
			v.add(path+".name", "%q is used twice: give each analysis its own name", a.Name)
		}
		byName[a.Name] = a
		if _, err := ParseModel(a.Model); err != nil {
			v.add(path+".model", "%s", err.Error())
		}
		if a.Shadow != "" {
			if _, err := ParseModel(a.Shadow); err != nil {
				v.add(path+".shadow", "%s", err.Error())
			} else if a.Shadow == a.Model {
				v.add(path+".shadow", "%q is the analysis' own model: name the version to compare with it, or remove shadow", a.Shadow)
			}
		}
		if a.Format != "automl-detection" && a.Format != "automl-classification" {
			v.add(path+".format", "%q: use automl-detection or automl-classification", a.Format)
		}
		v.onnx(path, *a)
		if a.Model == "builtin:faces" && a.Format != "automl-detection" {
			v.add(path+".format", "builtin:faces returns detections: set format: automl-detection or leave it out")
		}
		if a.Mode != "sync" && a.Mode != "async" {
			v.add(path+".mode", "%q: use sync (answered by the HTTP API) or async (push path)", a.Mode)
		}
		if c := *a.MinConfidence; c < 0 || c > 1 {
			v.add(path+".minConfidence", "%v: must be between 0 and 1", c)
		}
		if a.MaxPredictions < 1 {
			v.add(path+".maxPredictions", "must be at least 1")
		}
		if a.Timeout.Duration <= 0 || a.Timeout.Duration > 600e9 {
			v.add(path+".timeout", "%s: must be between 1s and 600s", a.Timeout)
		}
	}
	return byName
}

func (v *validator) transforms(ts []Transform, analyses map[string]*Analysis) {
	for i, t := range ts {
		path := fmt.Sprintf("pipeline.transforms[%d]", i)
		if n := countSet(t.Blur != nil, t.StripMetadata != nil, t.Downscale != nil); n != 1 {
			v.add(path, "set exactly one of blur, stripMetadata, downscale (found %d); write e.g. `- stripMetadata: {}`", n)
			continue
		}
		switch {
		case t.Blur != nil:
			b := t.Blur
			a := analyses[b.Analysis]
			switch {
			case b.Analysis == "":
				v.add(path+".blur.analysis", "name the detection analysis whose boxes to blur, e.g. faces")
			case a == nil:
				v.add(path+".blur.analysis", "%q is not an analysis in pipeline.analyses", b.Analysis)
			case a.Format != "automl-detection":
				v.add(path+".blur.analysis", "%q has format %s; only detection analyses have boxes to blur", b.Analysis, a.Format)
			}
			if *b.Padding < 0 || *b.Padding > 1 {
				v.add(path+".blur.padding", "%v: must be between 0 and 1 (a fraction of the box size)", *b.Padding)
			}
			switch b.Method {
			case "pixelate", "gaussian", "fill":
			default:
				v.add(path+".blur.method", "%q: use pixelate, gaussian or fill", b.Method)
			}
		case t.Downscale != nil:
			if t.Downscale.LongSide < 16 {
				v.add(path+".downscale.longSide", "must be at least 16 pixels, e.g. 2048")
			}
			if q := t.Downscale.Quality; q < 1 || q > 100 {
				v.add(path+".downscale.quality", "must be 1-100, e.g. 85")
			}
		}
	}
}

func (v *validator) actions(as []Action) {
	seen := map[string]bool{}
	for i, a := range as {
		path := fmt.Sprintf("pipeline.actions[%d]", i)
		if n := countSet(a.Store != nil, a.Record != nil, a.Publish != nil); n != 1 {
			v.add(path, "set exactly one of store, record, publish (found %d); write e.g. `- record: {}`", n)
			continue
		}
		kind := map[bool]string{a.Store != nil: "store", a.Record != nil: "record", a.Publish != nil: "publish"}[true]
		if seen[kind] {
			v.add(path, "%s appears twice: keep one", kind)
		}
		seen[kind] = true
		if a.Publish != nil && !matches(patTopicPart, a.Publish.Topic) {
			v.add(path+".publish.topic", "%q: use lowercase letters, digits and '-'", a.Publish.Topic)
		}
	}
}

func (v *validator) delivery(d *Delivery) {
	if d.MaxAttempts < 5 || d.MaxAttempts > 100 {
		v.add("delivery.maxAttempts", "%d: Pub/Sub dead-lettering allows 5-100", d.MaxAttempts)
	}
	if d.MinBackoff.Duration < 0 || d.MinBackoff.Seconds() > 600 {
		v.add("delivery.minBackoff", "%s: must be 0-600s", d.MinBackoff)
	}
	if d.MaxBackoff.Duration < d.MinBackoff.Duration || d.MaxBackoff.Seconds() > 600 {
		v.add("delivery.maxBackoff", "%s: must be at least minBackoff and at most 600s", d.MaxBackoff)
	}
	if s := d.AckDeadline.Seconds(); s < 10 || s > 600 {
		v.add("delivery.ackDeadline", "%s: must be 10s-600s (it is also the push timeout)", d.AckDeadline)
	}
	if d.Lease.Duration < 3*time.Second || d.Lease.Duration > d.AckDeadline.Duration/2 {
		v.add("delivery.lease", "%s: must be 3s to half the ackDeadline (a delivery that meets a dead worker's claim waits it out within its deadline)", d.Lease)
	}
}

func (v *validator) serving(s *Serving) {
	switch s.CPU {
	case 1, 2, 4, 8:
	default:
		v.add("serving.cpu", "%d: Cloud Run allows 1, 2, 4 or 8", s.CPU)
	}
	if !matches(`^[0-9]+(Mi|Gi)$`, s.Memory) {
		v.add("serving.memory", "%q: write e.g. 512Mi or 2Gi", s.Memory)
	}
	if s.Concurrency < 1 || s.Concurrency > 1000 {
		v.add("serving.concurrency", "%d: must be 1-1000", s.Concurrency)
	}
	if *s.MinInstances < 0 {
		v.add("serving.minInstances", "must not be negative")
	}
	if s.MaxInstances < 1 || s.MaxInstances < *s.MinInstances {
		v.add("serving.maxInstances", "%d: must be at least 1 and at least minInstances", s.MaxInstances)
	}
}

func (v *validator) monitoring(m *Monitoring, analyses map[string]*Analysis) {
	for i, e := range m.AlertEmails {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			v.add(fmt.Sprintf("monitoring.alertEmails[%d]", i), "%q is not an e-mail address", e)
		}
	}
	if d := m.Drift; d != nil {
		switch {
		case d.Analysis == "" && len(d.Analyses) == 0:
			v.add("monitoring.drift", "set analysis (the analysis to watch) or analyses (several)")
		case d.Analysis != "" && len(d.Analyses) > 0:
			v.add("monitoring.drift", "set analysis or analyses, not both")
		case d.Baseline != nil && len(d.Analyses) > 0:
			v.add("monitoring.drift.baseline", "a baseline describes one analysis: use analysis, not analyses, with it")
		}
		seen := map[string]bool{}
		for i, a := range d.Analyses {
			if seen[a] {
				v.add(fmt.Sprintf("monitoring.drift.analyses[%d]", i), "%q is listed twice", a)
			}
			seen[a] = true
			if analyses[a] == nil {
				v.add(fmt.Sprintf("monitoring.drift.analyses[%d]", i), "%q is not an analysis in pipeline.analyses", a)
			}
		}
		if d.Analysis != "" && analyses[d.Analysis] == nil {
			v.add("monitoring.drift.analysis", "%q is not an analysis in pipeline.analyses", d.Analysis)
		}
		if d.Threshold <= 0 {
			v.add("monitoring.drift.threshold", "must be positive; 0.1 warns early, 0.25 is a common alarm")
		}
		if d.Window < 10 {
			v.add("monitoring.drift.window", "must be at least 10 images")
		}
		if d.BaselineImages < 10 {
			v.add("monitoring.drift.baselineImages", "must be at least 10 images")
		}
		if b := d.Baseline; b != nil {
			shares := func(path string, xs []float64, n int, what string) {
				var sum float64
				for _, x := range xs {
					if x < 0 {
						v.add(path, "shares must not be negative")
						return
					}
					sum += x
				}
				switch {
				case len(xs) != n:
					v.add(path, "%d numbers: give %d, %s", len(xs), n, what)
				case sum <= 0:
					v.add(path, "all zero: give the expected shares, %s", what)
				}
			}
			shares("monitoring.drift.baseline.boxesPerImage", b.BoxesPerImage, 6, "for 0, 1, 2, 3, 4-5 and 6+ boxes per image")
			shares("monitoring.drift.baseline.confidence", b.Confidence, 10, "one per confidence tenth 0-0.1 … 0.9-1")
			for l, x := range b.Labels {
				if x < 0 {
					v.add("monitoring.drift.baseline.labels."+l, "shares must not be negative")
				}
			}
		}
	}
}

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
