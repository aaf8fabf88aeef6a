package config

import "fmt"

// Limits on the project name keep every derived GCP name legal (see Names).
const (
	MinNameLen = 3
	MaxNameLen = 20
)

// Names are the resource names derived from a project. The Pulumi stack, the CLI and
// the runtime all take names from here so that no name is spelt twice.
type Names struct {
	Stack            string // Pulumi stack
	IncomingBucket   string // 3-63, globally unique: prefixed with the GCP project id
	ProcessedBucket  string
	QuarantineBucket string
	ModelBucket      string // the project's model files (onnx: analyses, model deploy's artifacts)
	UploadedTopic    string // GCS notifications land here
	ProcessedTopic   string // downstream
	DeadLetterTopic  string
	PushSubscription string
	DeadLetterSub    string
	PipelineSA       string // service account id, 6-30
	InvokerSA        string
	RunService       string // Cloud Run service, ≤ 49
	Repository       string // Artifact Registry repository
	Database         string // Firestore database id, 4-63
	Endpoint         string // Vertex AI endpoint display name
}

// Names derives every resource name from the project name and GCP project.
func (p *Project) Names() Names {
	n := p.Name
	bucket := func(purpose string) string { return fmt.Sprintf("%s-%s-%s", p.GCP.Project, n, purpose) }
	return Names{
		Stack:            n,
		IncomingBucket:   bucket("incoming"),
		ProcessedBucket:  bucket("processed"),
		QuarantineBucket: bucket("quarantine"),
		ModelBucket:      bucket("models"),
		UploadedTopic:    n + "-uploaded",
		ProcessedTopic:   n + "-" + p.publishTopic(),
		DeadLetterTopic:  n + "-dead-letter",
		PushSubscription: n + "-push",
		DeadLetterSub:    n + "-dead-letter",
		PipelineSA:       n + "-pipeline",
		InvokerSA:        n + "-invoker",
		RunService:       n + "-pipeline",
		Repository:       n,
		Database:         n + "-meta",
		Endpoint:         n + "-endpoint",
	}
}

func (p *Project) publishTopic() string {
	for _, a := range p.Pipeline.Actions {
		if a.Publish != nil && a.Publish.Topic != "" {
			return a.Publish.Topic
		}
	}
	return DefaultTopic
}

// nameRule is one GCP naming rule checked against a derived name.
type nameRule struct {
	what     string
	min, max int
	pattern  string
}

var (
	ruleBucket  = nameRule{"Cloud Storage bucket", 3, 63, `^[a-z0-9][a-z0-9._-]*[a-z0-9]$`}
	ruleSA      = nameRule{"service account id", 6, 30, `^[a-z][a-z0-9-]*[a-z0-9]$`}
	ruleRun     = nameRule{"Cloud Run service", 1, 49, `^[a-z][a-z0-9-]*[a-z0-9]$`}
	ruleTopic   = nameRule{"Pub/Sub topic or subscription", 3, 255, `^[a-zA-Z][a-zA-Z0-9._~%+-]*$`}
	ruleRepo    = nameRule{"Artifact Registry repository", 1, 63, `^[a-z][a-z0-9-]*[a-z0-9]$`}
	ruleDB      = nameRule{"Firestore database id", 4, 63, `^[a-z][a-z0-9-]*[a-z0-9]$`}
	ruleDisplay = nameRule{"Vertex AI endpoint display name", 1, 128, `^.+$`}
)

// Checks lists each derived name with the GCP rule it must satisfy.
func (n Names) checks() []struct {
	name string
	rule nameRule
} {
	type c = struct {
		name string
		rule nameRule
	}
	return []c{
		{n.IncomingBucket, ruleBucket}, {n.ProcessedBucket, ruleBucket}, {n.QuarantineBucket, ruleBucket},
		{n.UploadedTopic, ruleTopic}, {n.ProcessedTopic, ruleTopic}, {n.DeadLetterTopic, ruleTopic},
		{n.PushSubscription, ruleTopic}, {n.DeadLetterSub, ruleTopic},
		{n.PipelineSA, ruleSA}, {n.InvokerSA, ruleSA}, {n.RunService, ruleRun},
		{n.Repository, ruleRepo}, {n.Database, ruleDB}, {n.Endpoint, ruleDisplay},
	}
}

// Problems returns a message for each derived name that breaks its GCP rule.
func (n Names) Problems() []string {
	var out []string
	for _, c := range n.checks() {
		if msg := c.rule.check(c.name); msg != "" {
			out = append(out, msg)
		}
	}
	return out
}

func (r nameRule) check(name string) string {
	if len(name) < r.min || len(name) > r.max {
		return fmt.Sprintf("derived %s name %q has %d characters; it must have %d-%d", r.what, name, len(name), r.min, r.max)
	}
	if !matches(r.pattern, name) {
		return fmt.Sprintf("derived %s name %q does not match %s", r.what, name, r.pattern)
	}
	return ""
}

// MemoryBytes is serving.memory in bytes ("512Mi" → 536870912); 0 if unparsable.
func (s Serving) MemoryBytes() int64 {
	var n int64
	var unit string
	if _, err := fmt.Sscanf(s.Memory, "%d%s", &n, &unit); err != nil {
		return 0
	}
	switch unit {
	case "Mi":
		return n << 20
	case "Gi":
		return n << 30
	}
	return 0
}
