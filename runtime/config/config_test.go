package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/visionstack/visionstack/runtime/config"
)

var update = flag.Bool("update", false, "rewrite project.schema.json from the Go types")

const minimal = `apiVersion: visionstack/v1
kind: Project
name: acme-defects
gcp: {project: acme-prod, region: europe-west3}
pipeline:
  analyses:
    - {name: faces, model: "builtin:faces", mode: sync}
`

func TestLoadMinimalAppliesDefaults(t *testing.T) {
	p, err := config.Load("p.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if p.Pipeline.Prepare.MaxBytes != 20<<20 || p.Pipeline.Prepare.MaxPixels != 50_000_000 {
		t.Errorf("prepare defaults not applied: %+v", p.Pipeline.Prepare)
	}
	a := p.Pipeline.Analyses[0]
	if a.Format != "automl-detection" || *a.MinConfidence != 0.5 || a.Mode != "sync" {
		t.Errorf("analysis defaults: %+v", a)
	}
	if p.Delivery.MaxAttempts != 5 || p.Delivery.AckDeadline.Seconds() != 300 {
		t.Errorf("delivery defaults: %+v", p.Delivery)
	}
	// Defaults are idempotent.
	before, _ := json.Marshal(p)
	p.ApplyDefaults()
	after, _ := json.Marshal(p)
	if !bytes.Equal(before, after) {
		t.Errorf("ApplyDefaults is not idempotent:\n%s\n%s", before, after)
	}
}

func TestLoadErrorsCarryLineAndFix(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error, in order of appearance
	}{
		{"unknown top-level key", minimal + "servng: {cpu: 1}\n",
			[]string{`p.yaml:8:1: unknown key "servng" (did you mean "serving"?)`}},
		{"unknown nested key, all reported", strings.Replace(minimal, "mode: sync}", "mode: sync, minConfidnce: 0.3, colour: red}", 1),
			[]string{`p.yaml:7:`, `pipeline.analyses[0]: unknown key "minConfidnce" (did you mean "minConfidence"?)`, `unknown key "colour"`}},
		{"bad name", strings.Replace(minimal, "name: acme-defects", "name: Acme_Defects", 1),
			[]string{`p.yaml:3:7: name: "Acme_Defects": use lowercase letters`}},
		{"name too long for derived names", strings.Replace(minimal, "name: acme-defects", "name: acme-defects-with-a-long-name", 1),
			[]string{`p.yaml:3:7: name: "acme-defects-with-a-long-name" has 29 characters; use 3-20`}},
		{"bad model", strings.Replace(minimal, `"builtin:faces"`, `"builtin:cats"`, 1),
			[]string{`p.yaml:7:`, `pipeline.analyses[0].model`, `no built-in model "cats"`}},
		{"shadow is the model", strings.Replace(minimal, `mode: sync}`, `mode: sync, shadow: "builtin:faces"}`, 1),
			[]string{`pipeline.analyses[0].shadow`, `the analysis' own model`}},
		{"bad shadow", strings.Replace(minimal, `mode: sync}`, `mode: sync, shadow: "kserve:ftp://x"}`, 1),
			[]string{`pipeline.analyses[0].shadow`, `kserve:https://host/v2/models/NAME`}},
		{"bad size", minimal + "  prepare: {maxBytes: lots}\n",
			[]string{`p.yaml:8:`, `"lots" is not a size`}},
		{"wrong type", strings.Replace(minimal, "region: europe-west3", "region: [a, b]", 1),
			[]string{`p.yaml:4:`, `cannot unmarshal`}},
		{"duplicate key", minimal + "name: again\n",
			[]string{`p.yaml:`, `already defined`}},
		{"transform with two kinds", minimal + "  transforms:\n    - {stripMetadata: {}, downscale: {}}\n",
			[]string{`p.yaml:9:7: pipeline.transforms[0]: set exactly one of blur, stripMetadata, downscale (found 2)`}},
		{"blur of unknown analysis", minimal + "  transforms:\n    - blur: {analysis: plates}\n",
			[]string{`p.yaml:9:24: pipeline.transforms[0].blur.analysis: "plates" is not an analysis`}},
		{"two documents", minimal + "---\nname: x\n",
			[]string{`one YAML document`}},
		{"empty", "", []string{"the file is empty"}},
		{"syntax error", "name: [unclosed\n", []string{"p.yaml:", "not valid YAML"}},
		{"bad email", minimal + "monitoring: {alertEmails: [not-an-email]}\n",
			[]string{`p.yaml:8:`, `"not-an-email" is not an e-mail address`}},
		{"drift without an analysis", minimal + "monitoring: {drift: {threshold: 0.3}}\n",
			[]string{`monitoring.drift: set analysis (the analysis to watch) or analyses (several)`}},
		{"drift of an analysis listed twice or unknown", minimal + "monitoring: {drift: {analyses: [faces, faces, plates]}}\n",
			[]string{`monitoring.drift.analyses[1]: "faces" is listed twice`, `monitoring.drift.analyses[2]: "plates" is not an analysis`}},
		{"drift baseline of the wrong shape", minimal + "monitoring: {drift: {analysis: faces, baseline: {labels: {face: 1}, boxesPerImage: [1, 2], confidence: [0,0,0,0,0,0,0,0,0,0]}}}\n",
			[]string{`monitoring.drift.baseline.boxesPerImage: 2 numbers: give 6`, `monitoring.drift.baseline.confidence: all zero`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Load("p.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("Load accepted an invalid file")
			}
			var probs config.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error is %T, want config.Problems", err)
			}
			msg := err.Error()
			pos := 0
			for _, w := range c.want {
				i := strings.Index(msg[pos:], w)
				if i < 0 {
					t.Fatalf("error lacks %q (in order):\n%s", w, msg)
				}
				pos += i
			}
		})
	}
}

func TestEveryProblemIsReported(t *testing.T) {
	bad := strings.NewReplacer("name: acme-defects", "name: X", "acme-prod", "p", "europe-west3", "mars").Replace(minimal)
	_, err := config.Load("p.yaml", []byte(bad))
	var probs config.Problems
	if !errors.As(err, &probs) || len(probs) < 3 {
		t.Fatalf("want ≥3 problems (name, project, region), got %v", err)
	}
}

func TestDerivedNamesLegalForLongestName(t *testing.T) {
	name := strings.Repeat("a", config.MaxNameLen)
	gcp := "a" + strings.Repeat("b", 28) + "c" // 30 characters, the longest project id
	y := strings.NewReplacer("acme-defects", name, "acme-prod", gcp).Replace(minimal)
	p, err := config.Load("p.yaml", []byte(y))
	if err != nil {
		t.Fatalf("longest allowed names rejected: %v", err)
	}
	if probs := p.Names().Problems(); len(probs) > 0 {
		t.Fatalf("derived names illegal: %v", probs)
	}
	if n := p.Names(); len(n.QuarantineBucket) > 63 || len(n.PipelineSA) > 30 || len(n.RunService) > 49 {
		t.Fatalf("limits exceeded: %+v", n)
	}
}

func TestParseUnits(t *testing.T) {
	for in, want := range map[string]config.ByteSize{"20MiB": 20 << 20, "1.5MB": 1_500_000, "512KiB": 512 << 10, "1024": 1024, "2GB": 2e9} {
		if got, err := config.ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]config.Count{"50M": 50e6, "12.5M": 12.5e6, "7": 7, "1K": 1000} {
		if got, err := config.ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "lots", "1.5XB", "NaN", "1e300GiB"} {
		if _, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestParseModel(t *testing.T) {
	good := []string{"builtin:faces", "vertex:endpoint", "vertex:projects/p/locations/europe-west3/endpoints/123",
		"kserve:http://127.0.0.1:8080/v2/models/faces", "onnx:model/defects.onnx", "onnx:gs://acme-models/defects.onnx"}
	for _, s := range good {
		if _, err := config.ParseModel(s); err != nil {
			t.Errorf("ParseModel(%q): %v", s, err)
		}
	}
	bad := []string{"faces", "builtin:", "vertex:projects/p", "kserve:ftp://x/v2/models/m", "kserve:http://h/models/m", "onnx:", "onnx:gs://bucket-only", "onnx:https://example.com/m.onnx", "tflite:x"}
	for _, s := range bad {
		if _, err := config.ParseModel(s); err == nil {
			t.Errorf("ParseModel(%q) accepted", s)
		}
	}
}

// TestSchemaUpToDate fails when the committed schema no longer matches the Go types.
// Regenerate with: make schema (go test ./runtime/config -run TestSchemaUpToDate -update).
func TestSchemaUpToDate(t *testing.T) {
	gen, err := config.GenerateSchema(".")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("project.schema.json", gen, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile("project.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gen, committed) {
		t.Fatal("runtime/config/project.schema.json is stale: run `make schema` and commit it")
	}
	if !bytes.Equal(config.SchemaJSON(), committed) {
		t.Fatal("embedded schema differs from the file: rebuild")
	}
}

// TestShippedFilesPassSchemaAndLoad checks the demo project and the template against
// both the JSON Schema (what editors see) and Load (what the tool sees).
func TestShippedFilesPassSchemaAndLoad(t *testing.T) {
	c := jsonschema.NewCompiler()
	var doc any
	if err := json.Unmarshal(config.SchemaJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(config.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(config.SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../projects/*/project.yaml")
	if len(files) == 0 {
		t.Fatal("no projects/*/project.yaml found")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(f, data); err != nil {
			t.Errorf("Load: %v", err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(v)
		var inst any
		_ = json.Unmarshal(js, &inst)
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s fails the JSON Schema: %v", f, err)
		}
	}
	// And the schema rejects what Load rejects for unknown keys.
	var v any
	_ = yaml.Unmarshal([]byte(minimal+"bogus: 1\n"), &v)
	js, _ := json.Marshal(v)
	var inst any
	_ = json.Unmarshal(js, &inst)
	if err := sch.Validate(inst); err == nil {
		t.Error("schema accepted an unknown top-level key")
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "  transforms:\n    - blur: {analysis: faces}\n"))
	f.Add([]byte("a: [1, {b: *x}]"))
	data, _ := os.ReadFile("../../projects/demo/project.yaml")
	f.Add(data)
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := config.Load("fuzz.yaml", in)
		if err == nil && len(p.Validate()) > 0 {
			t.Fatalf("Load accepted a project that fails Validate")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

func TestMemoryBytes(t *testing.T) {
	for in, want := range map[string]int64{"512Mi": 512 << 20, "2Gi": 2 << 30, "lots": 0} {
		if got := (config.Serving{Memory: in}).MemoryBytes(); got != want {
			t.Errorf("MemoryBytes(%q) = %d, want %d", in, got, want)
		}
	}
}

// The operations guide's metric table names every metric as the runtime and /metrics do.
func TestDocsListEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range config.Metrics {
		row := fmt.Sprintf("| `%s` | `%s` |", m.Name, m.PrometheusName())
		if !strings.Contains(string(readme), row) {
			t.Errorf("docs/operations.md's metric table lacks %s", row)
		}
	}
}

// docs/config-reference.md is what the Go types, their comments and the defaults
// generate: a key, a default or a comment changed without regenerating fails here.
func TestReferenceUpToDate(t *testing.T) {
	got, err := config.Reference()
	if err != nil {
		t.Fatal(err)
	}
	const path = "../../docs/config-reference.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != got {
		t.Fatalf("docs/config-reference.md is stale: run `make docs` and commit it")
	}
	for _, key := range []string{"`pipeline.prepare.maxBytes`", "`pipeline.analyses[].onnx.resize`", "`delivery.maxAttempts`", "`model.file`"} {
		if !strings.Contains(got, key) {
			t.Errorf("the reference has no %s", key)
		}
	}
}

// Issue 28 #1: one pass reports every problem — an unknown key no longer hides the
// others — each with its line, key path and what to write; a YAML syntax error is
// reported at the line the parser stops at, not where the enclosing block began.
func TestEveryProblemInOnePass(t *testing.T) {
	file := `apiVersion: visionstack/v1
kind: Project
name: acme
gcp: {project: acme-prod, region: europe-west3}
pipeline:
  prepare:
    autoOrent: true
  analyses:
    - {name: faces, model: "builtin:faces", mode: sometimes}
  transforms:
    - blur: {analysis: face}
  actions: [{store: {}}]
delivery:
  maxAttempts: five
monitoring:
  alertEmails: ops@acme.example
`
	_, err := config.Load("project.yaml", []byte(file))
	var probs config.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("%v", err)
	}
	want := []struct {
		line int
		path string
		says string
	}{
		{7, "pipeline.prepare", `unknown key "autoOrent" (did you mean "autoOrient"?)`},
		{9, "pipeline.analyses[0].mode", `"sometimes": use sync`},
		{11, "pipeline.transforms[0].blur.analysis", `"face" is not an analysis`},
		{14, "delivery.maxAttempts", `("five"); it must be a whole number: write digits`},
		{16, "monitoring.alertEmails", `("ops@acme.example"); it must be a list: write [ops@acme.example]`},
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(probs), len(want), probs)
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if p.Line == w.line && p.Path == w.path && strings.Contains(p.Message, w.says) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d, %s, saying %q:\n%s", w.line, w.path, w.says, probs)
		}
	}
	// The template writes delivery as one flow mapping: the wrong value is named by
	// its own key, not by the line's last one (it said delivery.ackDeadline, "300s").
	flow := strings.Replace(file, "delivery:\n  maxAttempts: five\n", "delivery: {maxAttempts: five, minBackoff: 10s, ackDeadline: 300s}\n", 1)
	_, err = config.Load("project.yaml", []byte(flow))
	if !errors.As(err, &probs) || !slices.ContainsFunc(probs, func(p config.Problem) bool {
		return p.Line == 13 && p.Column == 25 && p.Path == "delivery.maxAttempts" && strings.Contains(p.Message, `("five")`)
	}) {
		t.Errorf("maxAttempts: five in a flow mapping: %v", err)
	}
	slip := strings.Replace(file, "  actions: [{store: {}}]", "  actions:\n    - store: {}\n   - record: {}", 1)
	_, err = config.Load("project.yaml", []byte(slip))
	if !errors.As(err, &probs) || len(probs) != 1 || probs[0].Line != 14 || !strings.Contains(probs[0].Message, "not valid YAML") {
		t.Errorf("an indentation slip on line 14: %v", err)
	}
}
