package rollout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visionstack/visionstack/runtime/rollout"
	"github.com/visionstack/visionstack/runtime/rollout/rollouttest"
)

// The probe of issue 29: Cloud Monitoring leaves trailing empty buckets out of a
// point (distribution.proto). The newest minute {0,100}, an older one
// {0,80,0,0,0,20}: 20 of 200 requests took 400–800 ms. Reading only points as long as
// the newest gave p95 48.8 ms and promoted a canary slow in some minutes.
func TestCanarySlowInSomeMinutesIsRolledBack(t *testing.T) {
	slow := rollouttest.Healthy
	slow.Minutes = []rollouttest.Minute{
		{Predictions: 100, LatencyMs: 40},
		{Predictions: 100, LatencyMs: 40, Slow: 20, SlowMs: 600},
	}
	h := newHarness(t, slow)
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != rollout.PhaseRolledBack || !strings.Contains(st.Decision, "p95 over") {
		t.Fatalf("%s: %s; want rolled back for its p95", st.Phase, st.Decision)
	}
	if p95 := st.Numbers.Canary.P95; p95 < 400*time.Millisecond {
		t.Errorf("canary p95 %v: the slow minute's requests were not counted", p95)
	}
	if st.Numbers.Canary.Predictions != 200 {
		t.Errorf("canary predictions %d, want both minutes' 200", st.Numbers.Canary.Predictions)
	}
}

// The runtime's histograms come from several instances, each series' points with
// their own trailing zeros left out: every instance's images count.
func TestImagesCountedAcrossInstances(t *testing.T) {
	c := rollouttest.Healthy
	c.Boxes = []int64{20, 40, 20, 10, 5, 1} // one instance has none in the last bucket
	h := newHarness(t, c)
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Numbers.Canary.Images != 96 || st.Numbers.Stable.Images != 1000 {
		t.Errorf("images %d and %d, want 96 and 1000", st.Numbers.Canary.Images, st.Numbers.Stable.Images)
	}
	if st.Numbers.Distance.PSI == 0 {
		t.Error("PSI 0: the box histograms were read as empty")
	}
}

// Vertex reports prediction_latencies per latency_type (model, overhead, total); the
// rollout reads total alone, never the three merged.
func TestLatencyIsTheTotalOnly(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	if _, err := rollout.Run(context.Background(), h.opts); err != nil {
		t.Fatal(err)
	}
	h.fake.Mu.Lock()
	defer h.fake.Mu.Unlock()
	n := 0
	for _, f := range h.fake.Filters {
		if strings.Contains(f, rollout.MetricLatencies) {
			n++
			if !strings.Contains(f, `metric.labels.latency_type="total"`) {
				t.Errorf("latency read without its type: %s", f)
			}
		}
	}
	if n == 0 {
		t.Fatal("latency never read")
	}
}

// A canary whose every request fails serves no prediction (prediction_count counts
// predictions served): it is rolled back at the first look, not kept for the whole
// watch until "too little traffic".
func TestAllFailingCanaryRolledBackAtOnce(t *testing.T) {
	h := newHarness(t, rollouttest.Behaviour{Predictions: 0, Errors: 60, Boxes: []int64{0, 0, 0, 0, 0, 0}})
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != rollout.PhaseRolledBack || !strings.Contains(st.Decision, "errors rose") || h.looks != 1 {
		t.Fatalf("%s after %d looks: %s; want rolled back at the first look for its errors", st.Phase, h.looks, st.Decision)
	}
}

// A promoted version becomes the model's default version (what models/M means without
// @); a rolled-back one does not.
func TestPromotionMovesTheDefaultAlias(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	if _, err := rollout.Run(context.Background(), h.opts); err != nil {
		t.Fatal(err)
	}
	if d := h.fake.Default(); d != "2" {
		t.Errorf("default version %q after promotion, want 2", d)
	}
	failing := rollouttest.Healthy
	failing.Errors = 60
	h = newHarness(t, failing)
	if _, err := rollout.Run(context.Background(), h.opts); err != nil {
		t.Fatal(err)
	}
	if d := h.fake.Default(); d != "1" {
		t.Errorf("default version %q after a rollback, want 1", d)
	}
}

// Killed while DeployModel runs (its deployment not yet listed on the endpoint): the
// resumed rollout waits on the same operation instead of deploying a second canary
// that would sit at 0% for ever.
func TestKilledDuringDeployResumesTheOperation(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	h.fake.Mu.Lock()
	h.fake.Hold = true
	h.fake.Mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := rollout.Run(ctx, h.opts)
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		h.fake.Mu.Lock()
		started := h.fake.Deploys > 0 && h.fake.Polls > 1
		h.fake.Mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DeployModel never called")
		}
	}
	cancel() // the CLI dies while the deployment runs
	if err := <-done; err == nil {
		t.Fatal("interrupted run returned no error")
	}
	saved, err := rollout.Load(context.Background(), h.store, "acme")
	if err != nil || saved.Phase != rollout.PhaseDeploying || saved.DeployOperation == "" {
		t.Fatalf("saved %+v, %v: want deploying with its operation", saved, err)
	}
	h.fake.Mu.Lock()
	h.fake.Hold = false
	h.fake.Mu.Unlock()
	h.opts.Resume = true
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil || st.Phase != rollout.PhasePromoted {
		t.Fatalf("resume: %+v, %v", st, err)
	}
	h.fake.Mu.Lock()
	deploys := h.fake.Deploys
	h.fake.Mu.Unlock()
	if deploys != 1 {
		t.Errorf("%d DeployModel calls: the resume deployed a second canary", deploys)
	}
	if got := h.endpointState(); len(got) != 1 || got["222"] != 100 {
		t.Errorf("endpoint %v, want the one canary with all the traffic", got)
	}
}

// A deployment Vertex ends in an error (a container that never passes its health
// check) is a rollback, with the stable version keeping all the traffic; a resume
// would only wait on the same failure.
func TestFailedDeploymentRollsBack(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	h.fake.Mu.Lock()
	h.fake.FailDeploy = status.Error(codes.FailedPrecondition, "Model server never became ready. Please validate that your model file or container configuration are valid.")
	h.fake.Mu.Unlock()
	st, err := rollout.Run(context.Background(), h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != rollout.PhaseRolledBack || !strings.Contains(st.Decision, "never became ready") {
		t.Fatalf("%s: %s", st.Phase, st.Decision)
	}
	if got := h.endpointState(); len(got) != 1 || got["111"] != 100 {
		t.Errorf("endpoint %v, want only the stable version", got)
	}
}

// Issue 24 #8: two rollouts of one project at once — both read "none in progress",
// the second overwrote the first's state and its canary stayed deployed, untracked.
// The lease lets one run; the other is refused and says why.
func TestOneRolloutAtATime(t *testing.T) {
	h := newHarness(t, rollouttest.Healthy)
	h.fake.Mu.Lock()
	h.fake.Hold = true // the first rollout waits on its deployment
	h.fake.Mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := rollout.Run(ctx, h.opts)
		first <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.fake.Mu.Lock()
		started := h.fake.Deploys > 0
		h.fake.Mu.Unlock()
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first rollout never deployed")
		}
	}
	second := h.opts
	second.Resume = true // even a resume waits for the running one
	if _, err := rollout.Run(context.Background(), second); err == nil || !strings.Contains(err.Error(), "another model rollout") {
		t.Fatalf("a second rollout during the first: %v", err)
	}
	h.fake.Mu.Lock()
	h.fake.Hold = false
	h.fake.Mu.Unlock()
	if err := <-first; err != nil {
		t.Fatalf("the first rollout: %v", err)
	}
	h.fake.Mu.Lock()
	deploys := h.fake.Deploys
	h.fake.Mu.Unlock()
	if deploys != 1 {
		t.Errorf("%d deployments", deploys)
	}
}
