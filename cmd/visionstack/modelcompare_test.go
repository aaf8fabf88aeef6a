package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
)

// model compare over stored jobs: the agreement figures, and exit status 3 under
// --min-agreement when the shadow disagrees.
func TestModelCompareReportsAgreement(t *testing.T) {
	root := t.TempDir()
	y := mustRead(t, "../../projects/demo/project.yaml")
	y = strings.Replace(y, `mode: sync, minConfidence: 0.5}`, `mode: sync, minConfidence: 0.5, shadow: "kserve:http://canary/v2/models/faces"}`, 1)
	writeDemo(t, root, y)
	data := t.TempDir()
	s, err := sqlite.Open(filepath.Join(data, "visionstack.db"))
	must(t, err)
	ctx := context.Background()
	box := func(x float64) *meta.Box { return &meta.Box{XMin: x, XMax: x + 0.1, YMin: 0, YMax: 0.1} }
	for i, shadowX := range []float64{0.1, 0.1, 0.1, 0.8} { // the last image: the shadow sees another face
		key := string(rune('a' + i))
		c, err := s.Claim(ctx, key, meta.Source{Object: key}, "t", time.Minute)
		must(t, err)
		must(t, s.Complete(ctx, c, meta.Job{Key: key, State: meta.StateDone, Results: []meta.Result{{Analysis: "faces", ModelVersion: "1",
			Detections: []meta.Detection{{Label: "face", Confidence: 0.9, Box: box(0.1)}},
			Shadow:     &meta.Result{Analysis: "faces", ModelVersion: "2", Detections: []meta.Detection{{Label: "face", Confidence: 0.8, Box: box(shadowX)}}}}}}))
	}
	s.Close()
	out, err := runCLI(t, "--root", root, "model", "compare", "demo", "--data", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"images compared   4", "3 matched, 1 stable only, 1 shadow only: agreement (F1) 0.750", "same answer       3 (75.0%)", "1 ×4", "2 ×4"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "--root", root, "model", "compare", "demo", "--data", data, "--min-agreement", "0.9")
	if exitCode(err) != 3 || !strings.Contains(err.Error(), "faces 0.750") {
		t.Errorf("--min-agreement 0.9: exit %d, %v\n%s", exitCode(err), err, out)
	}
}
