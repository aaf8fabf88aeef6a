package rollout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/rollout"
	"github.com/visionstack/visionstack/runtime/rollout/rollouttest"
)

type harness struct {
	fake  *rollouttest.Fake
	opts  rollout.Options
	store meta.Store
	log   *bytes.Buffer
	now   time.Time
	looks int
}

func newHarness(t *testing.T, canary rollouttest.Behaviour) *harness {
	t.Helper()
	f := rollouttest.New(canary)
	models, endpoints, metrics := f.Clients(t)
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := &harness{fake: f, store: store, log: &bytes.Buffer{}, now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	h.opts = rollout.Options{Models: models, Endpoints: endpoints, Metrics: metrics, State: store, Log: h.log,
		Project: "acme", GCPProject: "acme-prod", Region: "europe-west3", EndpointID: "555", Analysis: "defects",
		Model: config.ModelDeploy{DisplayName: "acme-model", Image: "europe-west3-docker.pkg.dev/acme-prod/acme/model@sha256:def",
			PredictRoute: "/predict", HealthRoute: "/health", Port: 8080, MachineType: "n1-standard-2", MinReplicas: 1, MaxReplicas: 2},
		Canary: 10, Watch: 30 * time.Minute, Interval: 5 * time.Minute,
		Now: func() time.Time { return h.now },
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.looks++
			h.now = h.now.Add(d)
			return ctx.Err()
		}}
	return h
}

func (h *harness) endpointState() map[string]int32 { return h.fake.Deployed() }

func TestHealthyCanaryIsPromoted(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != rollout.PhasePromoted || !strings.HasPrefix(st.Decision, "promote: healthy") {
		t.Fatalf("state %+v", st)
	}
	if got := h.endpointState(); len(got) != 1 || got["222"] != 100 {
		t.Errorf("endpoint %v, want only the new version, with all the traffic", got)
	}
	h.fake.Mu.Lock()
	defer h.fake.Mu.Unlock()
	if h.fake.Upload.GetParentModel() != rollouttest.Answered(rollouttest.StableModel) || h.fake.Upload.GetModel().GetContainerSpec().GetImageUri() != h.opts.Model.Image {
		t.Errorf("upload %v: want a new version under %s", h.fake.Upload, rollouttest.StableModel)
	}
	if sp := h.fake.Deploy.GetTrafficSplit(); sp["0"] != 10 || sp["111"] != 90 || h.fake.Deploy.GetDeployedModel().GetModel() != rollouttest.Answered(rollouttest.StableModel)+"@2" {
		t.Errorf("deploy %v: want version 2 at 10%% beside the stable 90%%", h.fake.Deploy)
	}
	// Six over the 30 minutes, and the last one when the metrics' lag (3 minutes) has
	// passed after the watch: its last minutes are counted.
	if h.looks != 7 || h.now.Sub(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) != 33*time.Minute {
		t.Errorf("%d looks, the last at %s: want 7 over a 30-minute watch every 5 minutes and its 3-minute lag", h.looks, h.now.Format("15:04"))
	}
	saved, err := rollout.Load(context.Background(), h.store, "acme")
	if err != nil || saved.Phase != rollout.PhasePromoted || saved.Numbers == nil || saved.Numbers.Canary.Predictions != 400 {
		t.Errorf("saved state %+v, %v", saved, err)
	}
	if log := h.log.String(); !strings.Contains(log, `"step":"decision"`) || !strings.Contains(log, `"predictions":400`) || !strings.Contains(log, `"psi"`) {
		t.Errorf("decision log lacks the decision and its numbers:\n%s", log)
	}
}

func TestCanaryRolledBack(t *testing.T) {
	drifting := rollouttest.Healthy
	drifting.Boxes = []int64{70, 10, 5, 5, 5, 5} // finds nothing where the stable version finds faces
	failing := rollouttest.Healthy
	failing.Errors = 60
	slow := rollouttest.Healthy
	slow.LatencyMs = 300
	for _, c := range []struct {
		name   string
		canary rollouttest.Behaviour
		why    string
	}{
		{"predictions drift", drifting, "predictions drift"},
		{"errors rise", failing, "errors rose"},
		{"latency rises", slow, "p95 over 1.5×"},
		{"too little traffic", rollouttest.Behaviour{Predictions: 20, LatencyMs: 80, Boxes: []int64{5, 10, 5, 0, 0, 0}}, "too little canary traffic"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.canary)
			st, err := rollout.Run(context.Background(), h.opts)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != rollout.PhaseRolledBack || !strings.Contains(st.Decision, c.why) {
				t.Fatalf("state %s: %s; want rolled back because %s", st.Phase, st.Decision, c.why)
			}
			if got := h.endpointState(); len(got) != 1 || got["111"] != 100 {
				t.Errorf("endpoint %v, want only the stable version, with all the traffic", got)
			}
			if c.why != "too little canary traffic" && h.looks != 1 {
				t.Errorf("%d looks: a plainly worse canary is rolled back at the first", h.looks)
			}
		})
	}
}

// A crash in the middle of the watch leaves the canary at its share, the state says
// so, a new rollout is refused, and --resume finishes the watch and decides.
func TestCrashMidRolloutResumes(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	ctx, cancel := context.WithCancel(context.Background())
	sleep := h.opts.Sleep
	h.opts.Sleep = func(c context.Context, d time.Duration) error {
		if h.looks == 2 {
			cancel() // the CLI dies here
		}
		return sleep(c, d)
	}
	st, err := rollout.Run(ctx, h.opts)
	if err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	saved, err := rollout.Load(context.Background(), h.store, "acme")
	if err != nil || saved.Phase != rollout.PhaseWatching || saved.Canary.DeployedModelID != "222" || st.Phase != rollout.PhaseWatching {
		t.Fatalf("saved state %+v, %v; want watching canary 222", saved, err)
	}
	if got := h.endpointState(); got["111"] != 90 || got["222"] != 10 {
		t.Errorf("endpoint after the crash %v, want the stated 90/10 split", got)
	}
	h.opts.Sleep = sleep
	if _, err := rollout.Run(context.Background(), h.opts); !errors.Is(err, rollout.ErrInProgress) {
		t.Fatalf("a new rollout during one: %v, want ErrInProgress", err)
	}
	h.opts.Resume = true
	st, err = rollout.Run(context.Background(), h.opts)
	if err != nil || st.Phase != rollout.PhasePromoted {
		t.Fatalf("resume: %+v, %v", st, err)
	}
	if got := h.endpointState(); len(got) != 1 || got["222"] != 100 {
		t.Errorf("endpoint %v after resume", got)
	}
	h.fake.Mu.Lock()
	uploads := h.fake.Uploads
	h.fake.Mu.Unlock()
	if uploads != 1 {
		t.Errorf("%d uploads: resume must not upload again", uploads)
	}
	if _, err := rollout.Run(context.Background(), h.opts); err == nil {
		t.Error("resume with nothing in progress should say so")
	}
}

// Failures of Vertex AI calls at each step stop the rollout in a stated phase, and
// --resume carries on from it, without a second deployment.
func TestFailedStepsResume(t *testing.T) {
	for _, method := range []string{"UploadModel", "DeployModel", "UpdateEndpoint"} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, rollouttest.Healthy)
			h.fake.Mu.Lock()
			h.fake.FailNext = method
			h.fake.Mu.Unlock()
			if _, err := rollout.Run(context.Background(), h.opts); err == nil {
				t.Fatalf("%s failed, the rollout did not", method)
			}
			h.opts.Resume = true
			st, err := rollout.Run(context.Background(), h.opts)
			if err != nil || st.Phase != rollout.PhasePromoted {
				t.Fatalf("resume after %s failed: %+v, %v", method, st, err)
			}
			if got := h.endpointState(); len(got) != 1 || got["222"] != 100 {
				t.Errorf("endpoint %v", got)
			}
		})
	}
}

// A shadow rollout deploys the new version alone to the analysis' shadow endpoint,
// judges it by how its stored answers agree with the stable version's, and takes it
// off again; the stable endpoint is never touched.
func TestShadowRollout(t *testing.T) {
	face := func(x float64) meta.Detection {
		return meta.Detection{Label: "face", Confidence: 0.9, Box: &meta.Box{XMin: x, XMax: x + 0.1, YMin: 0.1, YMax: 0.2}}
	}
	for _, c := range []struct {
		name    string
		shadowX float64 // where the shadow sees the face the stable version sees at 0.1
		images  int
		agrees  bool
		why     string
	}{
		{"agrees", 0.1, 60, true, "agrees:"},
		{"disagrees", 0.6, 60, false, "disagrees (F1 under 0.90)"},
		{"too few images", 0.1, 10, false, "inconclusive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, rollouttest.Healthy)
			h.now = time.Now().Add(-time.Hour) // jobs recorded now fall in the watch
			ctx := context.Background()
			for i := range c.images {
				key := fmt.Sprint("img-", i)
				cl, err := h.store.Claim(ctx, key, meta.Source{Object: key}, "t", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				res := meta.Result{Analysis: "defects", ModelVersion: rollouttest.StableModel + "@1", Detections: []meta.Detection{face(0.1)},
					Shadow: &meta.Result{Analysis: "defects", ModelVersion: rollouttest.StableModel + "@2", Detections: []meta.Detection{face(c.shadowX)}}}
				if err := h.store.Complete(ctx, cl, meta.Job{Key: key, State: meta.StateDone, Results: []meta.Result{res}}); err != nil {
					t.Fatal(err)
				}
			}
			h.opts.ShadowEndpoint = rollouttest.ShadowEndpoint
			st, err := rollout.Run(ctx, h.opts)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != rollout.PhaseShadowed || st.Agreed() != c.agrees || !strings.Contains(st.Decision, c.why) {
				t.Fatalf("state %s, decision %q; want shadowed, agrees=%v (%s)", st.Phase, st.Decision, c.agrees, c.why)
			}
			if st.Shadow == nil || st.Shadow.Images != c.images {
				t.Errorf("shadow numbers %+v, want %d images", st.Shadow, c.images)
			}
			if got := h.endpointState(); len(got) != 1 || got["111"] != 100 {
				t.Errorf("stable endpoint %v: a shadow rollout must not touch it", got)
			}
			h.fake.Mu.Lock()
			defer h.fake.Mu.Unlock()
			if n := len(h.fake.ShadowEP.DeployedModels); n != 0 || h.fake.Deploy.GetEndpoint() != rollouttest.ShadowEndpoint {
				t.Errorf("shadow endpoint keeps %d deployments (deployed to %s); want the version deployed there and taken off", n, h.fake.Deploy.GetEndpoint())
			}
		})
	}
}
