// Package rollout ships a new version of a project's Vertex AI model as a canary and
// decides on its own: it uploads the version under the same model (model
// versioning), deploys it to the endpoint with a share of the traffic, watches it
// against the stable version — error ratio and p95 latency from Vertex AI's own
// metrics, and the distance between their predictions (PSI on labels, boxes per
// image and confidences) from the metrics the runtime writes — then promotes it to
// all the traffic or rolls it back (traffic to the stable version, canary
// undeployed).
//
// Every step is recorded before and after it runs, in the metadata store and in a
// log of decisions: a rollout interrupted anywhere (a crash, a kill) leaves the
// endpoint in a stated state, and Run with Resume finishes it from there.
package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/api/distribution"
	metricpb "google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/visionstack/visionstack/internal/wait"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/vertex"
	"github.com/visionstack/visionstack/runtime/modelcompare"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// Phases of a rollout, in order; Promoted and RolledBack are final.
const (
	PhaseUploading   = "uploading"
	PhaseDeploying   = "deploying"
	PhaseWatching    = "watching"
	PhasePromoting   = "promoting"
	PhaseRollingBack = "rolling-back"
	PhasePromoted    = "promoted"
	PhaseRolledBack  = "rolled-back"
	// A shadow rollout (Options.ShadowEndpoint) ends its watch here, then the new
	// version leaves the shadow endpoint.
	PhaseEndingShadow = "ending-shadow"
	PhaseShadowed     = "shadowed"
)

// Vertex AI's metrics of an endpoint's deployed models (label deployed_model_id).
const (
	MetricPredictions = "aiplatform.googleapis.com/prediction/online/prediction_count"
	MetricErrors      = "aiplatform.googleapis.com/prediction/online/error_count"
	MetricLatencies   = "aiplatform.googleapis.com/prediction/online/prediction_latencies"
)

// Limits decide a canary's fate.
type Limits struct {
	MinPredictions  int64   // canary predictions needed to promote (default 100)
	MaxErrorRatio   float64 // canary error ratio may exceed the stable one's by this (default 0.02)
	MaxLatencyRatio float64 // canary p95 may be this many times the stable one's (default 1.5)
	MaxPSI          float64 // prediction distance allowed (default: the drift threshold, 0.2)
	MinImages       int     // images per version before the PSI counts (default 50)
	MinAgreement    float64 // shadow: detection agreement (F1) needed (default 0.9)
}

func (l *Limits) defaults() {
	if l.MinPredictions <= 0 {
		l.MinPredictions = 100
	}
	if l.MaxErrorRatio <= 0 {
		l.MaxErrorRatio = 0.02
	}
	if l.MaxLatencyRatio <= 0 {
		l.MaxLatencyRatio = 1.5
	}
	if l.MaxPSI <= 0 {
		l.MaxPSI = config.DefaultDriftThreshold
	}
	if l.MinImages <= 0 {
		l.MinImages = 50
	}
	if l.MinAgreement <= 0 {
		l.MinAgreement = 0.9
	}
}

// Options of a rollout.
type Options struct {
	Models    *aiplatform.ModelClient
	Endpoints *aiplatform.EndpointClient
	Metrics   *monitoring.MetricClient
	State     meta.Store // where the rollout's state is kept (StateName)
	Log       io.Writer  // one JSON line per step and decision, with its numbers
	Progress  io.Writer  // the same for people

	Project    string // the visionstack project (the runtime's metric label)
	GCPProject string
	Region     string
	EndpointID string
	Analysis   string             // whose predictions are compared
	Model      config.ModelDeploy // the new version's container and resources
	Canary     int                // percent of the traffic the canary gets
	Watch      time.Duration      // how long the canary is watched
	Interval   time.Duration      // between looks (default a minute)
	// MetricsLag is how late Vertex AI's and the runtime's metrics arrive in Cloud
	// Monitoring (default 3 minutes): the last look is taken this long after the
	// watch ends, so the watch's last minutes are counted.
	MetricsLag time.Duration
	Limits     Limits
	Resume     bool // finish the rollout in progress instead of starting one
	// ShadowEndpoint, when set, makes it a shadow rollout: the new version is deployed
	// alone to this endpoint (an analysis' shadow, which the runtime calls beside the
	// stable model and never acts on), watched by how its stored answers agree with
	// the stable version's, then undeployed; the stable endpoint is never touched.
	ShadowEndpoint string

	Now   func() time.Time
	Sleep func(context.Context, time.Duration) error
}

// Arm is one version on the endpoint.
type Arm struct {
	DeployedModelID string `json:"deployedModelId,omitempty"`
	Model           string `json:"model,omitempty"` // projects/P/locations/L/models/M@V: what results record
}

// ArmNumbers are one version's figures over the watch so far.
type ArmNumbers struct {
	Predictions int64         `json:"predictions"`
	Errors      int64         `json:"errors"`
	ErrorRatio  float64       `json:"errorRatio"`
	P95         time.Duration `json:"p95"`
	Images      int           `json:"images"` // images whose predictions the runtime recorded
}

// Numbers compare the canary with the stable version.
type Numbers struct {
	Stable   ArmNumbers   `json:"stable"`
	Canary   ArmNumbers   `json:"canary"`
	Distance drift.Report `json:"distance"` // stable as expected, canary as actual
}

// ShadowNumbers are how a shadow agrees with the stable version so far.
type ShadowNumbers struct {
	Images       int          `json:"images"`
	ShadowFailed int          `json:"shadowFailed"`
	SameAnswer   int          `json:"sameAnswer"`
	F1           float64      `json:"f1"`
	Distance     drift.Report `json:"distance"`
}

// State is a rollout's record, saved before and after every step.
type State struct {
	ID             string         `json:"id"`
	Phase          string         `json:"phase"`
	Endpoint       string         `json:"endpoint"`
	ShadowEndpoint string         `json:"shadowEndpoint,omitempty"` // a shadow rollout's
	Shadow         *ShadowNumbers `json:"shadow,omitempty"`
	Stable         Arm            `json:"stable"`
	Canary         Arm            `json:"canary"`
	CanaryPct      int            `json:"canaryPercent"`
	WatchFrom      time.Time      `json:"watchFrom,omitzero"`
	WatchFor       time.Duration  `json:"watchFor"`
	Decision       string         `json:"decision,omitempty"`
	Numbers        *Numbers       `json:"numbers,omitempty"`
	// DeployOperation is the DeployModel operation under way: a rollout interrupted
	// while it runs waits on it when resumed instead of deploying a second canary.
	DeployOperation string    `json:"deployOperation,omitempty"`
	Updated         time.Time `json:"updated"`
}

// Final reports whether the rollout is over.
func (s State) Final() bool {
	return s.Phase == PhasePromoted || s.Phase == PhaseRolledBack || s.Phase == PhaseShadowed
}

// Agreed reports whether a finished shadow rollout found the versions agreeing.
func (s State) Agreed() bool {
	return s.Phase == PhaseShadowed && strings.HasPrefix(s.Decision, "agrees")
}

// StateName is where a project's rollout state is kept in the metadata store.
func StateName(project string) string { return "rollout-" + project }

// ErrInProgress: a rollout is under way; finish it with Resume.
var ErrInProgress = errors.New("a rollout is in progress")

// Load reads the project's rollout state (meta.ErrNotFound: none ever ran).
func Load(ctx context.Context, store meta.Store, project string) (State, error) {
	raw, err := store.Cursor(ctx, StateName(project))
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return State{}, fmt.Errorf("rollout state of %s: %w", project, err)
	}
	return s, nil
}

type runner struct {
	Options
	st State
}

// Run carries a rollout to promotion or rollback and returns its final state.
func Run(ctx context.Context, o Options) (State, error) {
	o.Limits.defaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = wait.For
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MetricsLag <= 0 {
		o.MetricsLag = 3 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	r := &runner{Options: o}
	// One runner per project's rollout, enforced: two at once would both read "no
	// rollout in progress" and the second would overwrite the first's state, leaving
	// its canary deployed with traffic and untracked.
	ctx, endLease, err := hold(ctx, o.State, StateName(o.Project))
	if err != nil {
		return State{}, err
	}
	defer endLease()
	prev, err := Load(ctx, o.State, o.Project)
	switch {
	case err != nil && !errors.Is(err, meta.ErrNotFound):
		return State{}, err
	case o.Resume && (err != nil || prev.Final()):
		return prev, fmt.Errorf("no rollout of %s to resume (last: %s)", o.Project, describe(prev))
	case !o.Resume && err == nil && !prev.Final():
		return prev, fmt.Errorf("%w: %s; finish it with model rollout --resume", ErrInProgress, describe(prev))
	case o.Resume:
		r.st = prev
		r.note("resuming in phase " + prev.Phase)
	default:
		if o.ShadowEndpoint != "" {
			o.Canary = 100 // of the shadow endpoint's traffic
		} else if o.Canary < 1 || o.Canary > 99 {
			return State{}, fmt.Errorf("canary share %d%%: give 1 to 99", o.Canary)
		}
		if err := r.begin(ctx); err != nil {
			return r.st, err
		}
	}
	for !r.st.Final() {
		var err error
		switch r.st.Phase {
		case PhaseUploading:
			err = r.upload(ctx)
		case PhaseDeploying:
			err = r.deploy(ctx)
		case PhaseWatching:
			err = r.watch(ctx)
		case PhasePromoting:
			err = r.finish(ctx, r.st.Canary, r.st.Stable, PhasePromoted)
		case PhaseRollingBack:
			err = r.finish(ctx, r.st.Stable, r.st.Canary, PhaseRolledBack)
		case PhaseEndingShadow:
			err = r.endShadow(ctx)
		default:
			err = fmt.Errorf("rollout state has unknown phase %q", r.st.Phase)
		}
		if err != nil {
			return r.st, fmt.Errorf("rollout %s, phase %s: %w (the endpoint is as the state says; run model rollout --resume to go on)", r.st.ID, r.st.Phase, err)
		}
	}
	return r.st, nil
}

// leaseTTL is how long a runner's lease lasts without renewal: a runner killed
// without giving it up blocks the next one (--resume) this long at most.
const leaseTTL = 2 * time.Minute

// hold takes the rollout's lease and renews it until end is called; the returned
// context ends if the lease is lost (another runner took it over after it ran out).
func hold(ctx context.Context, store meta.Store, name string) (context.Context, func(), error) {
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())
	err := store.Lease(ctx, name, holder, leaseTTL)
	var held *meta.HeldError
	if errors.As(err, &held) && deadHere(held.Holder) {
		// Its runner was killed on this machine (no such process now): its lease is
		// ended at once instead of making a resume wait for it to run out.
		if err = store.EndLease(ctx, name, held.Holder); err == nil {
			err = store.Lease(ctx, name, holder, leaseTTL)
		}
	}
	if errors.Is(err, meta.ErrHeld) {
		return nil, nil, fmt.Errorf("another model rollout of this project is running (%w); wait for it, or for its lease to run out if it was killed elsewhere, then run model rollout --resume", err)
	}
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := meta.KeepAlive(ctx, leaseTTL/4, func(ctx context.Context) error {
		if err := store.Lease(ctx, name, holder, leaseTTL); errors.Is(err, meta.ErrHeld) {
			return fmt.Errorf("rollout lease lost: %w", err)
		}
		return nil
	})
	return ctx, func() {
		// After stop, no renewal is in flight to take the lease back after it ends.
		stop()
		bg, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = store.EndLease(bg, name, holder)
	}, nil
}

// deadHere says whether holder (host/pid/…, as hold writes it) names a process of
// this machine that no longer runs.
func deadHere(holder string) bool {
	host, _ := os.Hostname()
	parts := strings.Split(holder, "/")
	if len(parts) != 3 || parts[0] != host {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func describe(s State) string {
	if s.ID == "" {
		return "none"
	}
	return fmt.Sprintf("rollout %s, phase %s since %s, canary %s at %d%%", s.ID, s.Phase, s.Updated.Format(time.RFC3339), s.Canary.Model, s.CanaryPct)
}

func (r *runner) endpointName() string {
	return fmt.Sprintf("projects/%s/locations/%s/endpoints/%s", r.GCPProject, r.Region, r.EndpointID)
}

// begin finds the stable version: the deployed model with the most traffic.
func (r *runner) begin(ctx context.Context) error {
	ep, err := r.Endpoints.GetEndpoint(ctx, &aiplatformpb.GetEndpointRequest{Name: r.endpointName()})
	if err != nil {
		return fmt.Errorf("read endpoint: %w", err)
	}
	var stable *aiplatformpb.DeployedModel
	for _, dm := range ep.GetDeployedModels() {
		if stable == nil || ep.GetTrafficSplit()[dm.GetId()] > ep.GetTrafficSplit()[stable.GetId()] {
			stable = dm
		}
	}
	if stable == nil {
		return fmt.Errorf("endpoint %s has no deployed model: deploy the first version with visionstack model deploy", r.endpointName())
	}
	now := r.Now().UTC()
	r.st = State{ID: now.Format("20060102T150405Z"), Phase: PhaseUploading, Endpoint: r.endpointName(), CanaryPct: r.Canary, WatchFor: r.Watch,
		ShadowEndpoint: r.ShadowEndpoint,
		Stable:         Arm{DeployedModelID: stable.GetId(), Model: versioned(stable.GetModel(), stable.GetModelVersionId())}}
	return r.save("begin", fmt.Sprintf("stable version %s (deployed model %s); uploading %s as a new version", r.st.Stable.Model, r.st.Stable.DeployedModelID, r.Model.Image))
}

// modelKey is a model's name from "/locations/" on: Vertex answers with the
// project's number in names where requests carry its id (projects/123456789/…), so
// names are compared by what follows the project.
func modelKey(name string) string {
	if i := strings.Index(name, "/locations/"); i >= 0 {
		return name[i:]
	}
	return name
}

// versioned names a model version as results record it: M@V.
func versioned(model, version string) string {
	if strings.Contains(model, "@") || version == "" {
		return model
	}
	return model + "@" + version
}

// upload adds the new version under the stable version's model. Interrupted before
// its answer was saved, it runs again: the earlier upload is an unused version.
func (r *runner) upload(ctx context.Context) error {
	parentModel, _, _ := strings.Cut(r.st.Stable.Model, "@")
	op, err := r.Models.UploadModel(ctx, vertex.UploadRequest(fmt.Sprintf("projects/%s/locations/%s", r.GCPProject, r.Region), parentModel, r.Model))
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	resp, err := op.Wait(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	r.st.Canary = Arm{Model: versioned(resp.GetModel(), resp.GetModelVersionId())}
	r.st.Phase = PhaseDeploying
	return r.save("uploaded", "new version "+r.st.Canary.Model)
}

// deploy puts the canary on the endpoint with its share, beside the stable version
// (or alone on the shadow endpoint, in a shadow rollout).
func (r *runner) deploy(ctx context.Context) error {
	if r.st.ShadowEndpoint != "" {
		return r.deployShadow(ctx)
	}
	if _, err := r.place(ctx, r.st.Endpoint, func(canary string) map[string]int32 {
		return map[string]int32{canary: int32(r.st.CanaryPct), r.st.Stable.DeployedModelID: int32(100 - r.st.CanaryPct)}
	}); err != nil {
		var df *deployFailed
		if errors.As(err, &df) {
			r.st.Phase, r.st.Decision = PhaseRollingBack, "roll back: "+df.Error()
			return r.save("decision", r.st.Decision)
		}
		return err
	}
	r.st.Phase, r.st.WatchFrom = PhaseWatching, r.Now().UTC()
	return r.save("deployed", fmt.Sprintf("canary %s deployed as %s with %d%% of the traffic; watching for %s", r.st.Canary.Model, r.st.Canary.DeployedModelID, r.st.CanaryPct, r.st.WatchFor))
}

// deployShadow puts the new version alone on the shadow endpoint, undeploying what
// an earlier shadow left there.
func (r *runner) deployShadow(ctx context.Context) error {
	ep, err := r.place(ctx, r.st.ShadowEndpoint, func(canary string) map[string]int32 { return map[string]int32{canary: 100} })
	if err != nil {
		var df *deployFailed
		if errors.As(err, &df) {
			r.st.Phase, r.st.Decision = PhaseEndingShadow, "inconclusive: "+df.Error()
			return r.save("decision", r.st.Decision)
		}
		return err
	}
	for _, dm := range ep.GetDeployedModels() { // an earlier shadow's leftovers
		if dm.GetId() != r.st.Canary.DeployedModelID {
			if err := r.undeploy(ctx, r.st.ShadowEndpoint, dm.GetId(), map[string]int32{r.st.Canary.DeployedModelID: 100}); err != nil {
				return err
			}
		}
	}
	r.st.Phase, r.st.WatchFrom = PhaseWatching, r.Now().UTC()
	return r.save("deployed", fmt.Sprintf("shadow %s deployed as %s on %s; the runtime calls it beside the stable version; watching for %s",
		r.st.Canary.Model, r.st.Canary.DeployedModelID, r.st.ShadowEndpoint, r.st.WatchFor))
}

// place deploys the canary to endpoint with the traffic split gives it ("0" while it
// is being deployed). A deployment that finished before an interruption is found on
// the endpoint, adopted and given its split. It returns the endpoint as read first.
func (r *runner) place(ctx context.Context, endpoint string, split func(canary string) map[string]int32) (*aiplatformpb.Endpoint, error) {
	ep, err := r.Endpoints.GetEndpoint(ctx, &aiplatformpb.GetEndpointRequest{Name: endpoint})
	if err != nil {
		return nil, fmt.Errorf("read endpoint: %w", err)
	}
	for _, dm := range ep.GetDeployedModels() {
		if modelKey(versioned(dm.GetModel(), dm.GetModelVersionId())) == modelKey(r.st.Canary.Model) {
			r.st.Canary.DeployedModelID = dm.GetId()
		}
	}
	if r.st.Canary.DeployedModelID != "" {
		return ep, r.traffic(ctx, endpoint, split(r.st.Canary.DeployedModelID))
	}
	var op *aiplatform.DeployModelOperation
	if r.st.DeployOperation != "" {
		op = r.Endpoints.DeployModelOperation(r.st.DeployOperation)
		r.note("waiting on the deployment started before: " + r.st.DeployOperation)
	} else {
		op, err = r.Endpoints.DeployModel(ctx, &aiplatformpb.DeployModelRequest{Endpoint: endpoint,
			DeployedModel: vertex.DeployedModel(r.st.Canary.Model, r.Model), TrafficSplit: split("0")})
		if err != nil {
			return nil, fmt.Errorf("deploy to %s: %w", endpoint, err)
		}
		r.st.DeployOperation = op.Name()
		if err := r.save("deploying", "deployment "+op.Name()+" started"); err != nil {
			return nil, err
		}
	}
	resp, err := op.Wait(ctx)
	if err != nil {
		if op.Done() { // the operation itself failed: a container that never became ready…
			r.st.DeployOperation = ""
			return nil, &deployFailed{err}
		}
		return nil, fmt.Errorf("deploy to %s: %w", endpoint, err)
	}
	r.st.DeployOperation = ""
	r.st.Canary.DeployedModelID = resp.GetDeployedModel().GetId()
	return ep, nil
}

// deployFailed: Vertex finished the deployment with an error (e.g. "Model server
// never became ready"): nothing of the canary takes traffic, and the rollout rolls
// back instead of waiting for a resume that would fail the same way.
type deployFailed struct{ err error }

func (e *deployFailed) Error() string { return "the new version failed to deploy: " + e.err.Error() }

// watch looks at the new version every interval until the watch is over, deciding
// at once when it is plainly worse.
func (r *runner) watch(ctx context.Context) error {
	end := r.st.WatchFrom.Add(r.st.WatchFor).Add(r.MetricsLag) // the last minutes' figures arrive late
	look := r.lookCanary
	if r.st.ShadowEndpoint != "" {
		look = r.lookShadow
	}
	for {
		if left := end.Sub(r.Now()); left > 0 {
			if err := r.Sleep(ctx, min(left, r.Interval)); err != nil {
				return err
			}
		}
		why, decided, err := look(ctx, !r.Now().Before(end))
		if err != nil {
			return err
		}
		if decided {
			r.st.Decision = why
			return r.save("decision", why)
		}
		if err := r.save("look", why); err != nil {
			return err
		}
	}
}

// lookCanary measures the canary against the stable version: a rollback as soon as
// it is unhealthy, a promotion when the watch is over (final).
func (r *runner) lookCanary(ctx context.Context, final bool) (why string, decided bool, err error) {
	n, err := r.measure(ctx)
	if err != nil {
		return "", false, err
	}
	r.st.Numbers = &n
	healthy, why := r.judge(n, final)
	switch {
	case !healthy:
		r.st.Phase = PhaseRollingBack
		return "roll back: " + why, true, nil
	case final:
		r.st.Phase = PhasePromoting
		return "promote: " + why, true, nil
	}
	return why, false, nil
}

// lookShadow measures the shadow's agreement; a verdict ends the watch.
func (r *runner) lookShadow(ctx context.Context, final bool) (why string, decided bool, err error) {
	n, err := r.measureShadow(ctx)
	if err != nil {
		return "", false, err
	}
	r.st.Shadow = &n
	why, decided = r.judgeShadow(n, final)
	if decided {
		r.st.Phase = PhaseEndingShadow
	}
	return why, decided, nil
}

// judge says whether the canary is healthy so far (final: the watch is over) and why.
func (r *runner) judge(n Numbers, final bool) (bool, string) {
	l := r.Limits
	c, s := n.Canary, n.Stable
	figures := fmt.Sprintf("errors %.2f%% vs %.2f%%, p95 %s vs %s, prediction PSI %.3f over %d and %d images",
		100*c.ErrorRatio, 100*s.ErrorRatio, c.P95, s.P95, n.Distance.PSI, c.Images, s.Images)
	switch {
	case c.Errors >= 5 && c.ErrorRatio > s.ErrorRatio+l.MaxErrorRatio:
		return false, "canary errors rose: " + figures
	case c.Predictions >= l.MinPredictions && s.P95 > 0 && float64(c.P95) > l.MaxLatencyRatio*float64(s.P95):
		return false, fmt.Sprintf("canary p95 over %.1f× the stable one's: %s", l.MaxLatencyRatio, figures)
	case c.Images >= l.MinImages && s.Images >= l.MinImages && n.Distance.PSI > l.MaxPSI:
		return false, fmt.Sprintf("canary predictions drift from the stable version's (PSI > %.2f): %s", l.MaxPSI, figures)
	case final && c.Predictions < l.MinPredictions:
		return false, fmt.Sprintf("too little canary traffic to judge (%d predictions, %d needed): %s", c.Predictions, l.MinPredictions, figures)
	case final && (c.Images < l.MinImages || s.Images < l.MinImages):
		return false, fmt.Sprintf("too few images with recorded predictions to compare (%d needed of each): %s", l.MinImages, figures)
	}
	return true, "healthy: " + figures
}

// measureShadow compares the stable version's stored answers with the shadow's, on
// the images both answered since the watch began.
func (r *runner) measureShadow(ctx context.Context) (ShadowNumbers, error) {
	jobs, err := r.State.List(ctx, meta.Filter{State: meta.StateDone, Limit: shadowJobs})
	if err != nil {
		return ShadowNumbers{}, fmt.Errorf("read jobs: %w", err)
	}
	jobs = slices.DeleteFunc(jobs, func(j meta.Job) bool {
		return j.Updated.Before(r.st.WatchFrom) || !slices.ContainsFunc(j.Results, func(res meta.Result) bool {
			return res.Analysis == r.Analysis && res.Shadow != nil && modelKey(res.Shadow.ModelVersion) == modelKey(r.st.Canary.Model)
		})
	})
	a := modelcompare.Jobs(jobs, r.Analysis, r.Limits.MaxPSI)
	return ShadowNumbers{Images: a.Images, ShadowFailed: a.ShadowFailed, SameAnswer: a.SameAnswer, F1: a.F1(), Distance: a.Distance}, nil
}

// shadowJobs bounds the latest jobs a shadow watch reads.
const shadowJobs = 5000

// judgeShadow says whether the watch is over (decided) and why: "agrees: …" when it
// ends with the versions agreeing; plainly disagreeing ends it at once; at its end,
// too few images is no verdict of agreement.
func (r *runner) judgeShadow(n ShadowNumbers, final bool) (why string, decided bool) {
	l := r.Limits
	figures := fmt.Sprintf("detection agreement (F1) %.3f, same answer on %d of %d images, prediction PSI %.3f (shadow failed on %d)",
		n.F1, n.SameAnswer, n.Images, n.Distance.PSI, n.ShadowFailed)
	enough := n.Images >= l.MinImages
	switch {
	case enough && n.F1 < l.MinAgreement:
		return fmt.Sprintf("disagrees (F1 under %.2f): %s", l.MinAgreement, figures), true
	case enough && n.Distance.PSI > l.MaxPSI:
		return fmt.Sprintf("disagrees (PSI over %.2f): %s", l.MaxPSI, figures), true
	case final && !enough:
		return fmt.Sprintf("inconclusive: too few images answered by both (%d needed): %s", l.MinImages, figures), true
	case final:
		return "agrees: " + figures, true
	}
	return figures, false
}

// endShadow takes the new version off the shadow endpoint (the runtime's shadow calls
// then fail and are recorded as such until the shadow is removed from the project).
func (r *runner) endShadow(ctx context.Context) error {
	if err := r.undeploy(ctx, r.st.ShadowEndpoint, r.st.Canary.DeployedModelID, nil); err != nil {
		return err
	}
	r.st.Phase = PhaseShadowed
	next := "roll it out with visionstack model rollout (canary)"
	if !r.st.Agreed() {
		next = "do not roll it out as it is"
	}
	return r.save(PhaseShadowed, fmt.Sprintf("%s undeployed from the shadow endpoint; %s", r.st.Canary.Model, next))
}

// undeploy takes deployed model id off endpoint, leaving split; one that is not
// there (an interrupted finish already took it off, or it never was) is no error.
func (r *runner) undeploy(ctx context.Context, endpoint, id string, split map[string]int32) error {
	ep, err := r.Endpoints.GetEndpoint(ctx, &aiplatformpb.GetEndpointRequest{Name: endpoint})
	if err != nil {
		return fmt.Errorf("read endpoint: %w", err)
	}
	if id == "" || !slices.ContainsFunc(ep.GetDeployedModels(), func(dm *aiplatformpb.DeployedModel) bool { return dm.GetId() == id }) {
		return nil
	}
	op, err := r.Endpoints.UndeployModel(ctx, &aiplatformpb.UndeployModelRequest{Endpoint: endpoint, DeployedModelId: id, TrafficSplit: split})
	if err != nil {
		return fmt.Errorf("undeploy %s: %w", id, err)
	}
	if _, err := op.Wait(ctx); err != nil {
		return fmt.Errorf("undeploy %s: %w", id, err)
	}
	return nil
}

// finish gives keep all the traffic and undeploys drop. Each half is idempotent, so
// an interrupted finish runs again from the start.
func (r *runner) finish(ctx context.Context, keep, drop Arm, final string) error {
	if err := r.traffic(ctx, r.st.Endpoint, map[string]int32{keep.DeployedModelID: 100}); err != nil {
		return err
	}
	if final == PhasePromoted {
		// The registry's default version is what models/M without @ means: it moves to
		// the promoted version (there is exactly one default per model).
		if _, err := r.Models.MergeVersionAliases(ctx, &aiplatformpb.MergeVersionAliasesRequest{Name: keep.Model, VersionAliases: []string{"default"}}); err != nil {
			return fmt.Errorf("make %s the default version: %w", keep.Model, err)
		}
	}
	if err := r.undeploy(ctx, r.st.Endpoint, drop.DeployedModelID, map[string]int32{keep.DeployedModelID: 100}); err != nil {
		return err
	}
	r.st.Phase = final
	return r.save(final, fmt.Sprintf("%s has all the traffic; %s undeployed", keep.Model, drop.Model))
}

func (r *runner) traffic(ctx context.Context, endpoint string, split map[string]int32) error {
	_, err := r.Endpoints.UpdateEndpoint(ctx, &aiplatformpb.UpdateEndpointRequest{
		Endpoint:   &aiplatformpb.Endpoint{Name: endpoint, TrafficSplit: split},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"traffic_split"}}})
	if err != nil {
		return fmt.Errorf("set traffic %v: %w", split, err)
	}
	return nil
}

// save records the state and logs the step.
func (r *runner) save(step, what string) error {
	r.st.Updated = r.Now().UTC()
	raw, err := json.Marshal(r.st)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(struct {
		Time    time.Time      `json:"time"`
		Rollout string         `json:"rollout"`
		Step    string         `json:"step"`
		Phase   string         `json:"phase"`
		What    string         `json:"what"`
		Numbers *Numbers       `json:"numbers,omitempty"`
		Shadow  *ShadowNumbers `json:"shadow,omitempty"`
	}{r.st.Updated, r.st.ID, step, r.st.Phase, what, r.st.Numbers, r.st.Shadow})
	fmt.Fprintf(r.Log, "%s\n", line)
	r.note(what)
	// The state is saved with a context of its own: a cancelled run still records
	// where it got to.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.State.SaveCursor(ctx, StateName(r.Project), raw); err != nil {
		return fmt.Errorf("save rollout state: %w", err)
	}
	return nil
}

// note tells people what happened.
func (r *runner) note(what string) {
	fmt.Fprintf(r.Progress, "%s  %-12s %s\n", r.Now().UTC().Format("15:04:05"), r.st.Phase, what)
}

// measure reads both versions' figures since the watch began.
func (r *runner) measure(ctx context.Context) (Numbers, error) {
	var n Numbers
	var counts [2]drift.Counts
	for i, arm := range []Arm{r.st.Stable, r.st.Canary} {
		a := &n.Stable
		if i == 1 {
			a = &n.Canary
		}
		vertex := fmt.Sprintf(`resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="%s" AND metric.labels.deployed_model_id="%s"`, r.EndpointID, arm.DeployedModelID)
		var err error
		if a.Predictions, err = r.sum(ctx, MetricPredictions, vertex); err != nil {
			return n, err
		}
		if a.Errors, err = r.sum(ctx, MetricErrors, vertex); err != nil {
			return n, err
		}
		// Of the requests answered or failed: prediction_count counts predictions
		// served, so a version whose every request fails has none and all errors.
		if a.Predictions+a.Errors > 0 {
			a.ErrorRatio = float64(a.Errors) / float64(a.Predictions+a.Errors)
		}
		// One latency type: Vertex writes model, overhead and total (= model +
		// overhead) as separate series of the same metric (label latency_type).
		lat, err := r.histogram(ctx, MetricLatencies, vertex+` AND metric.labels.latency_type="total"`)
		if err != nil {
			return n, err
		}
		a.P95 = time.Duration(lat.quantile(0.95) * float64(time.Millisecond)) // Vertex reports milliseconds
		// The version as the runtime recorded it from Vertex's answers, whose names may
		// carry the project's number where ours carry its id: matched from /locations/ on.
		own := fmt.Sprintf(`resource.type="%s" AND metric.labels.project="%s" AND metric.labels.analysis="%s" AND metric.labels.model_version=ends_with("%s")`,
			config.CloudMetricResource, r.Project, r.Analysis, modelKey(arm.Model))
		boxes, err := r.histogram(ctx, config.MetricPredictionBoxes.CloudType(), own)
		if err != nil {
			return n, err
		}
		conf, err := r.histogram(ctx, config.MetricPredictionConfidence.CloudType(), own)
		if err != nil {
			return n, err
		}
		labels, err := r.byLabel(ctx, config.MetricPredictionLabels.CloudType(), own, "label")
		if err != nil {
			return n, err
		}
		bc, err := boxes.fit(len(config.PredictionBoxBounds) + 1)
		if err != nil {
			return n, fmt.Errorf("%s: %w", config.MetricPredictionBoxes.CloudType(), err)
		}
		cc, err := conf.fit(len(config.PredictionConfidenceBounds) + 1)
		if err != nil {
			return n, fmt.Errorf("%s: %w", config.MetricPredictionConfidence.CloudType(), err)
		}
		counts[i] = drift.Counts{Labels: labels, Boxes: bc, Confidence: cc}
		for _, c := range boxes.counts {
			a.Images += int(c)
		}
	}
	n.Distance = drift.CompareCounts(counts[0], counts[1], r.Limits.MaxPSI)
	return n, nil
}

func (r *runner) interval() *monitoringpb.TimeInterval {
	return &monitoringpb.TimeInterval{StartTime: timestamppb.New(r.st.WatchFrom), EndTime: timestamppb.New(r.Now())}
}

func (r *runner) series(ctx context.Context, metricType, filter string, each func(*monitoringpb.TimeSeries)) error {
	it := r.Metrics.ListTimeSeries(ctx, &monitoringpb.ListTimeSeriesRequest{Name: "projects/" + r.GCPProject,
		Filter: fmt.Sprintf(`metric.type="%s" AND %s`, metricType, filter), Interval: r.interval(),
		View: monitoringpb.ListTimeSeriesRequest_FULL})
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", metricType, err)
		}
		each(ts)
	}
}

// sum adds up a delta count's points.
func (r *runner) sum(ctx context.Context, metricType, filter string) (int64, error) {
	var total int64
	err := r.series(ctx, metricType, filter, func(ts *monitoringpb.TimeSeries) {
		for _, p := range ts.GetPoints() {
			total += p.GetValue().GetInt64Value()
		}
	})
	return total, err
}

// byLabel adds up a counter's points by one of its labels. The runtime's counters are
// cumulative: each series counts from its start, so its latest point is its total
// (series that started before the watch are over-counted the same way for both
// versions, which a PSI does not mind).
func (r *runner) byLabel(ctx context.Context, metricType, filter, label string) (map[string]float64, error) {
	out := map[string]float64{}
	err := r.series(ctx, metricType, filter, func(ts *monitoringpb.TimeSeries) {
		if ps := ts.GetPoints(); len(ps) > 0 {
			v := ps[0].GetValue() // newest first
			out[ts.GetMetric().GetLabels()[label]] += float64(v.GetInt64Value()) + v.GetDoubleValue()
		}
	})
	return out, err
}

// hist is a distribution read back: bucket upper bounds and counts.
type hist struct {
	bounds []float64 // len(counts)-1 finite bounds
	counts []float64
}

// histogram adds up the distributions of the matching series (the newest point of a
// cumulative series, every point of a delta one). Cloud Monitoring leaves out trailing
// empty buckets ("If you supply fewer than N values, the remaining values are assumed
// to be 0", google/api/distribution.proto): the number of buckets comes from the
// bucket options, and a point's missing counts are zeros. Points of another bucket
// layout cannot be added up: that is an error, never a point skipped.
func (r *runner) histogram(ctx context.Context, metricType, filter string) (hist, error) {
	var h hist
	var bad error
	err := r.series(ctx, metricType, filter, func(ts *monitoringpb.TimeSeries) {
		ps := ts.GetPoints()
		if ts.GetMetricKind() != metricpb.MetricDescriptor_DELTA && len(ps) > 1 {
			ps = ps[:1]
		}
		for _, p := range ps {
			d := p.GetValue().GetDistributionValue()
			if d == nil || bad != nil {
				continue
			}
			n := buckets(d.GetBucketOptions())
			if n == 0 || len(d.GetBucketCounts()) > n {
				bad = fmt.Errorf("a point with %d bucket counts for %d buckets (%v)", len(d.GetBucketCounts()), n, d.GetBucketOptions())
				continue
			}
			b := bounds(d.GetBucketOptions(), n)
			if h.counts == nil {
				h.bounds, h.counts = b, make([]float64, n)
			}
			if !slices.Equal(b, h.bounds) {
				bad = fmt.Errorf("series with different buckets (%v and %v)", h.bounds, b)
				continue
			}
			for i, c := range d.GetBucketCounts() {
				h.counts[i] += float64(c)
			}
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return hist{}, fmt.Errorf("read %s: %w", metricType, err)
	}
	return h, nil
}

// buckets is how many buckets a distribution's options define: the finite ones and
// the underflow and overflow buckets (distribution.proto).
func buckets(o *distribution.Distribution_BucketOptions) int {
	switch {
	case o.GetExplicitBuckets() != nil:
		return len(o.GetExplicitBuckets().GetBounds()) + 1
	case o.GetExponentialBuckets() != nil:
		return int(o.GetExponentialBuckets().GetNumFiniteBuckets()) + 2
	case o.GetLinearBuckets() != nil:
		return int(o.GetLinearBuckets().GetNumFiniteBuckets()) + 2
	}
	return 0
}

// fit returns the counts as n bins (none recorded: zeros); another number of
// buckets than the runtime writes is an error, not zeros.
func (h hist) fit(n int) ([]float64, error) {
	switch len(h.counts) {
	case n:
		return h.counts, nil
	case 0:
		return make([]float64, n), nil
	}
	return nil, fmt.Errorf("%d buckets, want %d: the runtime that wrote them has other bounds than this one", len(h.counts), n)
}

// quantile interpolates the q-quantile inside its bucket.
func (h hist) quantile(q float64) float64 {
	var total float64
	for _, c := range h.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want, seen := q*total, 0.0
	for i, c := range h.counts {
		if seen+c >= want && c > 0 {
			lo, hi := 0.0, 0.0
			if i > 0 {
				lo = h.bounds[i-1]
			}
			if i < len(h.bounds) {
				hi = h.bounds[i]
			} else {
				return lo // the overflow bucket: its lower bound
			}
			return lo + (hi-lo)*(want-seen)/c
		}
		seen += c
	}
	return h.bounds[len(h.bounds)-1]
}

// bounds are the finite bucket bounds of a distribution with n buckets.
func bounds(o *distribution.Distribution_BucketOptions, n int) []float64 {
	out := make([]float64, 0, max(n-1, 0))
	switch {
	case o.GetExplicitBuckets() != nil:
		out = append(out, o.GetExplicitBuckets().GetBounds()...)
	case o.GetExponentialBuckets() != nil:
		e := o.GetExponentialBuckets()
		for i := range n - 1 {
			out = append(out, e.GetScale()*math.Pow(e.GetGrowthFactor(), float64(i)))
		}
	case o.GetLinearBuckets() != nil:
		l := o.GetLinearBuckets()
		for i := range n - 1 {
			out = append(out, l.GetOffset()+l.GetWidth()*float64(i))
		}
	}
	return out
}
