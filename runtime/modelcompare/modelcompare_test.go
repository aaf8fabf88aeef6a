package modelcompare_test

import (
	"testing"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/modelcompare"
)

func face(x, conf float64) meta.Detection {
	return meta.Detection{Label: "face", Confidence: conf, Box: &meta.Box{XMin: x, XMax: x + 0.1, YMin: 0.1, YMax: 0.2}}
}

func job(stable, shadow []meta.Detection, shadowErr string) meta.Job {
	return meta.Job{State: meta.StateDone, Results: []meta.Result{{Analysis: "faces", ModelVersion: "1", Detections: stable,
		Shadow: &meta.Result{Analysis: "faces", ModelVersion: "2", Detections: shadow, Error: shadowErr}}}}
}

func TestAgreement(t *testing.T) {
	jobs := []meta.Job{
		job([]meta.Detection{face(0.1, 0.9), face(0.5, 0.8)}, []meta.Detection{face(0.11, 0.85), face(0.5, 0.7)}, ""), // same faces
		job([]meta.Detection{face(0.1, 0.9)}, []meta.Detection{face(0.7, 0.6)}, ""),                                   // disagree
		job(nil, []meta.Detection{face(0.3, 0.6)}, ""),                                                                // shadow only
		job([]meta.Detection{face(0.1, 0.9)}, nil, "503"),                                                             // shadow failed
		{State: meta.StateDone, Results: []meta.Result{{Analysis: "faces"}}},                                          // no shadow
	}
	a := modelcompare.Jobs(jobs, "faces", 0.2)
	if a.Images != 3 || a.ShadowFailed != 1 || a.Matched != 2 || a.StableOnly != 1 || a.ShadowOnly != 2 || a.SameAnswer != 1 {
		t.Fatalf("agreement %+v", a)
	}
	if f1 := a.F1(); f1 != 4.0/7 {
		t.Errorf("F1 = %v, want 4/7", f1)
	}
	if a.StableVersions["1"] != 3 || a.ShadowVersions["2"] != 3 {
		t.Errorf("versions %v %v", a.StableVersions, a.ShadowVersions)
	}
	// Identical answers: no distance; a shadow finding twice the faces: distance.
	same := modelcompare.Jobs(jobs[:1], "faces", 0.2)
	if same.F1() != 1 || same.Distance.PSIBoxes != 0 {
		t.Errorf("identical answers: F1 %v, PSI boxes %v", same.F1(), same.Distance.PSIBoxes)
	}
	var many []meta.Job
	for range 20 {
		many = append(many, job([]meta.Detection{face(0.1, 0.9)}, []meta.Detection{face(0.1, 0.9), face(0.4, 0.5), face(0.7, 0.5)}, ""))
	}
	if d := modelcompare.Jobs(many, "faces", 0.2).Distance; !d.Drifted || d.PSIBoxes < 1 {
		t.Errorf("a shadow finding three faces where the stable model finds one: %+v, want drifted", d)
	}
}
