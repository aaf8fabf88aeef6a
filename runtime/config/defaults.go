package config

import (
	"slices"
	"time"
)

// Defaults, in one place. Applied by Load before Validate.
const (
	DefaultMaxBytes       ByteSize = 20 << 20
	DefaultMaxPixels      Count    = 50_000_000
	DefaultMaxDimension            = 16384
	DefaultLongSide                = 1024
	DefaultPayloadLimit   ByteSize = 1_500_000 // Vertex AI shared public endpoints cap near 1.5 MB
	DefaultQuality                 = 90
	DefaultMinConfidence           = 0.5
	DefaultMaxPredictions          = 100
	// AnonymizedMaxPredictions is what an analysis a blur reads asks its model for,
	// whatever its maxPredictions: a crowd is anonymized whole.
	AnonymizedMaxPredictions   = 1000
	DefaultModelTimeout        = 30 * time.Second
	DefaultPadding             = 0.15
	DefaultBlurMethod          = "pixelate"
	DefaultOutLongSide         = 2048
	DefaultOutQuality          = 85
	DefaultTopic               = "processed"
	DefaultMaxAttempts         = 5
	DefaultMinBackoff          = 10 * time.Second
	DefaultMaxBackoff          = 600 * time.Second
	DefaultAckDeadline         = 300 * time.Second
	DefaultLease               = 15 * time.Second
	DefaultDriftThreshold      = 0.2
	DefaultDriftWindow         = 500
	DefaultDriftBaselineImages = 200
)

// DefaultFormats are the input formats accepted when none are configured.
var DefaultFormats = []string{"jpeg", "png", "webp"}

// ApplyDefaults fills every unset field. It is idempotent.
func (p *Project) ApplyDefaults() {
	pr := &p.Pipeline.Prepare
	setIfZero(&pr.MaxBytes, DefaultMaxBytes)
	setIfZero(&pr.MaxPixels, DefaultMaxPixels)
	setIfZero(&pr.MaxDimension, DefaultMaxDimension)
	if len(pr.Formats) == 0 {
		pr.Formats = append([]string(nil), DefaultFormats...)
	}
	if pr.AutoOrient == nil {
		pr.AutoOrient = ptr(true)
	}
	setIfZero(&pr.Resize.LongSide, DefaultLongSide)
	setIfZero(&pr.Resize.Crop, "none")
	setIfZero(&pr.PayloadLimit, DefaultPayloadLimit)
	setIfZero(&pr.Quality, DefaultQuality)
	setIfZero(&pr.PayloadFormat, "jpeg")

	for i := range p.Pipeline.Analyses {
		a := &p.Pipeline.Analyses[i]
		if a.ONNX != nil {
			setIfZero(&a.ONNX.Format, "auto")
			if a.ONNX.Format == "classification" {
				setIfZero(&a.Format, "automl-classification")
			}
		}
		setIfZero(&a.Format, "automl-detection")
		setIfZero(&a.Mode, "async")
		if a.MinConfidence == nil {
			a.MinConfidence = ptr(DefaultMinConfidence)
		}
		setIfZero(&a.MaxPredictions, DefaultMaxPredictions)
		setIfZero(&a.Timeout.Duration, DefaultModelTimeout)
	}
	for _, t := range p.Pipeline.Transforms {
		if b := t.Blur; b != nil {
			if b.Padding == nil {
				b.Padding = ptr(DefaultPadding)
			}
			if b.Verify == nil {
				b.Verify = ptr(true)
			}
			setIfZero(&b.Method, DefaultBlurMethod)
		}
		if d := t.Downscale; d != nil {
			setIfZero(&d.LongSide, DefaultOutLongSide)
			setIfZero(&d.Quality, DefaultOutQuality)
		}
	}
	for _, a := range p.Pipeline.Actions {
		if a.Publish != nil {
			setIfZero(&a.Publish.Topic, DefaultTopic)
		}
	}

	d := &p.Delivery
	setIfZero(&d.MaxAttempts, DefaultMaxAttempts)
	setIfZero(&d.MinBackoff.Duration, DefaultMinBackoff)
	setIfZero(&d.MaxBackoff.Duration, DefaultMaxBackoff)
	setIfZero(&d.AckDeadline.Duration, DefaultAckDeadline)
	setIfZero(&d.Lease.Duration, DefaultLease)

	s := &p.Serving
	setIfZero(&s.CPU, 1)
	setIfZero(&s.Memory, "1Gi")
	setIfZero(&s.Concurrency, 8)
	if s.MinInstances == nil {
		s.MinInstances = ptr(0)
	}
	setIfZero(&s.MaxInstances, 20)

	if m := p.Model; m != nil {
		setIfZero(&m.DisplayName, p.Name+"-model")
		setIfZero(&m.PredictRoute, "/predict")
		setIfZero(&m.HealthRoute, "/health")
		setIfZero(&m.Port, 8080)
		setIfZero(&m.MachineType, "n1-standard-2")
		setIfZero(&m.MinReplicas, 1)
		setIfZero(&m.MaxReplicas, max(m.MinReplicas, 1))
	}
	if dr := p.Monitoring.Drift; dr != nil {
		setIfZero(&dr.Threshold, DefaultDriftThreshold)
		setIfZero(&dr.Window, DefaultDriftWindow)
		setIfZero(&dr.BaselineImages, DefaultDriftBaselineImages)
	}
}

func setIfZero[T comparable](dst *T, v T) {
	var zero T
	if *dst == zero {
		*dst = v
	}
}

func ptr[T any](v T) *T { return &v }

// Anonymized reports whether a blur transform reads analysis's boxes.
func (p Pipeline) Anonymized(analysis string) bool {
	for _, t := range p.Transforms {
		if t.Blur != nil && t.Blur.Analysis == analysis {
			return true
		}
	}
	return false
}

// WithoutRecheck is a copy of p with every blur's re-check (verify) off: what the
// benchmarks and tests compare the re-check's cost against.
func (p *Project) WithoutRecheck() *Project {
	c := *p
	c.Pipeline.Transforms = slices.Clone(p.Pipeline.Transforms)
	for i, t := range c.Pipeline.Transforms {
		if t.Blur != nil {
			b := *t.Blur
			b.Verify = ptr(false)
			c.Pipeline.Transforms[i].Blur = &b
		}
	}
	return &c
}
