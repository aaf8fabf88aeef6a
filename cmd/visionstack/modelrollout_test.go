package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/rollout"
	"github.com/visionstack/visionstack/runtime/rollout/rollouttest"
)

const rolloutChildEnv = "VISIONSTACK_ROLLOUT_CHILD"

// `model rollout` killed with SIGKILL while it watches the canary: the endpoint stays
// at the stated 90/10 split, status says so and how to go on, and `--resume`
// finishes the watch and promotes the canary, without uploading or deploying again.
// Vertex AI and Cloud Monitoring are local gRPC fakes (rollouttest).
func TestModelRolloutKilledThenResumed(t *testing.T) {
	runChildIfAsked(rolloutChildEnv)
	fake, root, _ := rolloutFixture(t)
	data := t.TempDir()
	logFile := filepath.Join(data, "rollout.log")
	args := []string{"--root", root, "model", "rollout", "demo", "--backend", "local", "--data", data, "--analysis", "faces",
		"--canary", "10", "--watch", "4s", "--interval", "250ms", "--metrics-lag", "250ms", "--log", logFile}

	child := exec.Command(os.Args[0], "-test.run=^TestModelRolloutKilledThenResumed$")
	child.Env = append(os.Environ(), rolloutChildEnv+"="+strings.Join(args, "\x1f"))
	must(t, child.Start())
	phase := func() string { return rolloutPhase(data) }
	deadline := time.Now().Add(time.Minute)
	for phase() != rollout.PhaseWatching && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	must(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	if p := phase(); p != rollout.PhaseWatching {
		t.Fatalf("killed in phase %q, want watching", p)
	}
	if got := fake.Deployed(); len(got) != 2 || got["111"] != 90 || got["222"] != 10 {
		t.Fatalf("endpoint after the kill %v, want stable 90%% and canary 10%%", got)
	}
	out, err := runCLI(t, "--root", root, "status", "demo", "--data", data)
	if err != nil || !strings.Contains(out, "watching") || !strings.Contains(out, "model rollout demo --resume") {
		t.Fatalf("status after the kill: %v\n%s", err, out)
	}
	if out, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("a second rollout during one must be refused: %v\n%s", err, out)
	}

	out, err = runCLI(t, append(args, "--resume")...)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if !strings.Contains(out, ": promoted") || !strings.Contains(out, "promote: healthy") {
		t.Errorf("resume output:\n%s", out)
	}
	if got := fake.Deployed(); len(got) != 1 || got["222"] != 100 {
		t.Errorf("endpoint %v, want the canary alone with all the traffic", got)
	}
	fake.Mu.Lock()
	uploads := fake.Uploads
	fake.Mu.Unlock()
	if uploads != 1 {
		t.Errorf("%d uploads, want 1", uploads)
	}
	log, err := os.ReadFile(logFile)
	must(t, err)
	if !strings.Contains(string(log), `"step":"decision"`) || !strings.Contains(string(log), `"step":"promoted"`) {
		t.Errorf("decision log:\n%s", log)
	}
}

// `model rollout --shadow`: the new version goes to the analysis' shadow endpoint
// only; the answers the runtime stores beside the stable ones while it is watched
// decide; it is taken off again and the stable endpoint is untouched.
func TestModelRolloutShadow(t *testing.T) {
	fake, root, y := rolloutFixture(t)
	file := filepath.Join(root, "projects", "demo", "project.yaml")
	data := t.TempDir()
	args := []string{"--root", root, "model", "rollout", "demo", "--backend", "local", "--data", data, "--analysis", "faces",
		"--shadow", "--watch", "2s", "--interval", "200ms", "--metrics-lag", "200ms", "--min-images", "5", "--log", filepath.Join(data, "rollout.log")}
	if out, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "set shadow:") {
		t.Fatalf("--shadow without a shadow endpoint in the project: %v\n%s", err, out)
	}
	y = strings.Replace(y, `mode: sync, minConfidence: 0.5}`, `mode: sync, minConfidence: 0.5, shadow: "vertex:`+rollouttest.ShadowEndpoint+`"}`, 1)
	must(t, os.WriteFile(file, []byte(y), 0o644))

	// The runtime's part, played here: once the shadow is deployed, jobs come in with
	// its answers beside the stable ones.
	go func() {
		for rolloutPhase(data) != rollout.PhaseWatching {
			time.Sleep(20 * time.Millisecond)
		}
		s, err := sqlite.Open(filepath.Join(data, "visionstack.db"))
		if err != nil {
			return
		}
		defer s.Close()
		box := &meta.Box{XMin: 0.1, XMax: 0.2, YMin: 0.1, YMax: 0.2}
		for i := range 8 {
			key := fmt.Sprint("img-", i)
			c, err := s.Claim(context.Background(), key, meta.Source{Object: key}, "t", time.Minute)
			if err != nil {
				return
			}
			d := []meta.Detection{{Label: "face", Confidence: 0.9, Box: box}}
			_ = s.Complete(context.Background(), c, meta.Job{Key: key, State: meta.StateDone, Results: []meta.Result{{Analysis: "faces",
				ModelVersion: rollouttest.StableModel + "@1", Detections: d, Shadow: &meta.Result{Analysis: "faces", ModelVersion: rollouttest.StableModel + "@2", Detections: d}}}})
		}
	}()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("shadow rollout: %v\n%s", err, out)
	}
	if !strings.Contains(out, ": shadowed") || !strings.Contains(out, "decision: agrees: detection agreement (F1) 1.000, same answer on 8 of 8 images") {
		t.Errorf("output:\n%s", out)
	}
	if got := fake.Deployed(); len(got) != 1 || got["111"] != 100 {
		t.Errorf("stable endpoint %v, want untouched", got)
	}
}

// rolloutFixture is the fake Vertex AI and Cloud Monitoring, with the demo project
// (GCP project acme-prod, a model block) under a new root; y is the project file.
func rolloutFixture(t *testing.T) (fake *rollouttest.Fake, root, y string) {
	t.Helper()
	fake = rollouttest.New(rollouttest.Healthy)
	t.Setenv(APIHostEnv, fake.Serve(t))
	fake.Mu.Lock()
	fake.EP.Name = "projects/acme-prod/locations/europe-west3/endpoints/" + stack.EndpointID("acme-prod", "demo")
	fake.Mu.Unlock()
	root = t.TempDir()
	y = mustRead(t, "../../projects/demo/project.yaml")
	y = strings.Replace(y, "gcp: {project: visionstack-demo,", "gcp: {project: acme-prod,", 1)
	y += "model: {image: europe-west3-docker.pkg.dev/acme-prod/acme/model@sha256:def, machineType: n1-standard-2}\n"
	writeDemo(t, root, y)
	return fake, root, y
}

// rolloutPhase is the phase of the demo's rollout in a local store ("" before one).
func rolloutPhase(data string) string {
	s, err := sqlite.Open(filepath.Join(data, "visionstack.db"))
	if err != nil {
		return ""
	}
	defer s.Close()
	st, _ := rollout.Load(context.Background(), s, "demo")
	return st.Phase
}
