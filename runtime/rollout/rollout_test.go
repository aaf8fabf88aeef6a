package rollout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/api/distribution"
	metricpb "google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/rollout"
)

const (
	endpoint    = "projects/acme-prod/locations/europe-west3/endpoints/555"
	stableModel = "projects/acme-prod/locations/europe-west3/models/42"
)

// behaviour is what the fake's metrics say about a version.
type behaviour struct {
	predictions, errors int64
	latencyMs           float64 // every prediction's latency
	boxes               []int64 // images per 0, 1, 2, 3, 4-5, 6+ detections
}

var (
	healthy = behaviour{predictions: 400, errors: 1, latencyMs: 80, boxes: []int64{20, 40, 20, 10, 5, 5}}
	steady  = behaviour{predictions: 4000, errors: 10, latencyMs: 75, boxes: []int64{200, 400, 200, 100, 50, 50}}
)

// fakeVertex speaks ModelService, EndpointService, Operations and MetricService.
type fakeVertex struct {
	aiplatformpb.UnimplementedModelServiceServer
	aiplatformpb.UnimplementedEndpointServiceServer
	longrunningpb.UnimplementedOperationsServer
	monitoringpb.UnimplementedMetricServiceServer

	mu       sync.Mutex
	ep       *aiplatformpb.Endpoint
	ops      map[string]proto.Message
	upload   *aiplatformpb.UploadModelRequest
	deploy   *aiplatformpb.DeployModelRequest
	uploads  int
	failNext string // a method that fails once with Unavailable
	canary   behaviour
	stable   behaviour
}

func newFakeVertex(canary behaviour) *fakeVertex {
	return &fakeVertex{ops: map[string]proto.Message{}, canary: canary, stable: steady,
		ep: &aiplatformpb.Endpoint{Name: endpoint, TrafficSplit: map[string]int32{"111": 100},
			DeployedModels: []*aiplatformpb.DeployedModel{{Id: "111", Model: stableModel, ModelVersionId: "1"}}}}
}

func (f *fakeVertex) fail(method string) error {
	if f.failNext == method {
		f.failNext = ""
		return status.Error(codes.Unavailable, method+": connection reset")
	}
	return nil
}

func (f *fakeVertex) op(name string, resp proto.Message) *longrunningpb.Operation {
	f.ops[name] = resp
	return &longrunningpb.Operation{Name: name}
}

func (f *fakeVertex) GetOperation(_ context.Context, r *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, err := anypb.New(f.ops[r.Name])
	if err != nil {
		return nil, err
	}
	return &longrunningpb.Operation{Name: r.Name, Done: true, Result: &longrunningpb.Operation_Response{Response: a}}, nil
}

func (f *fakeVertex) UploadModel(_ context.Context, r *aiplatformpb.UploadModelRequest) (*longrunningpb.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("UploadModel"); err != nil {
		return nil, err
	}
	f.upload, f.uploads = r, f.uploads+1
	return f.op(fmt.Sprintf("operations/upload-%d", f.uploads), &aiplatformpb.UploadModelResponse{Model: r.ParentModel, ModelVersionId: "2"}), nil
}

func (f *fakeVertex) GetEndpoint(_ context.Context, r *aiplatformpb.GetEndpointRequest) (*aiplatformpb.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Name != endpoint {
		return nil, status.Errorf(codes.NotFound, "endpoint %s", r.Name)
	}
	return proto.Clone(f.ep).(*aiplatformpb.Endpoint), nil
}

func (f *fakeVertex) setTraffic(split map[string]int32) error {
	var sum int32
	for id, v := range split {
		sum += v
		if !f.deployed(id) {
			return status.Errorf(codes.InvalidArgument, "traffic for %s, which is not deployed", id)
		}
	}
	if sum != 100 {
		return status.Errorf(codes.InvalidArgument, "traffic split %v does not add up to 100", split)
	}
	f.ep.TrafficSplit = split
	return nil
}

func (f *fakeVertex) deployed(id string) bool {
	for _, dm := range f.ep.DeployedModels {
		if dm.Id == id {
			return true
		}
	}
	return false
}

func (f *fakeVertex) DeployModel(_ context.Context, r *aiplatformpb.DeployModelRequest) (*longrunningpb.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("DeployModel"); err != nil {
		return nil, err
	}
	f.deploy = r
	model, version, _ := strings.Cut(r.DeployedModel.Model, "@")
	dm := &aiplatformpb.DeployedModel{Id: "222", Model: model, ModelVersionId: version}
	f.ep.DeployedModels = append(f.ep.DeployedModels, dm)
	split := map[string]int32{}
	for id, v := range r.TrafficSplit {
		if id == "0" {
			id = dm.Id
		}
		split[id] = v
	}
	if err := f.setTraffic(split); err != nil {
		return nil, err
	}
	return f.op("operations/deploy", &aiplatformpb.DeployModelResponse{DeployedModel: dm}), nil
}

func (f *fakeVertex) UpdateEndpoint(_ context.Context, r *aiplatformpb.UpdateEndpointRequest) (*aiplatformpb.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("UpdateEndpoint"); err != nil {
		return nil, err
	}
	if len(r.UpdateMask.GetPaths()) != 1 || r.UpdateMask.Paths[0] != "traffic_split" {
		return nil, status.Errorf(codes.InvalidArgument, "update mask %v", r.UpdateMask)
	}
	if err := f.setTraffic(r.Endpoint.TrafficSplit); err != nil {
		return nil, err
	}
	return proto.Clone(f.ep).(*aiplatformpb.Endpoint), nil
}

func (f *fakeVertex) UndeployModel(_ context.Context, r *aiplatformpb.UndeployModelRequest) (*longrunningpb.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ep.TrafficSplit[r.DeployedModelId] != 0 && r.TrafficSplit == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%s still has traffic", r.DeployedModelId)
	}
	var kept []*aiplatformpb.DeployedModel
	for _, dm := range f.ep.DeployedModels {
		if dm.Id != r.DeployedModelId {
			kept = append(kept, dm)
		}
	}
	f.ep.DeployedModels = kept
	if r.TrafficSplit != nil {
		if err := f.setTraffic(r.TrafficSplit); err != nil {
			return nil, err
		}
	}
	return f.op("operations/undeploy", &aiplatformpb.UndeployModelResponse{}), nil
}

var (
	reType    = regexp.MustCompile(`metric.type="([^"]+)"`)
	reDeploy  = regexp.MustCompile(`deployed_model_id="([^"]+)"`)
	reVersion = regexp.MustCompile(`model_version="([^"]+)"`)
)

func (f *fakeVertex) ListTimeSeries(_ context.Context, r *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	typ := reType.FindStringSubmatch(r.Filter)
	if typ == nil || r.Interval.GetStartTime() == nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q, interval %v", r.Filter, r.Interval)
	}
	var b behaviour
	switch {
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "111",
		reVersion.MatchString(r.Filter) && reVersion.FindStringSubmatch(r.Filter)[1] == stableModel+"@1":
		b = f.stable
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "222",
		reVersion.MatchString(r.Filter) && reVersion.FindStringSubmatch(r.Filter)[1] == stableModel+"@2":
		b = f.canary
	default:
		return &monitoringpb.ListTimeSeriesResponse{}, nil
	}
	dist := func(bounds []float64, counts []int64) *monitoringpb.TypedValue {
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: &distribution.Distribution{
			BucketOptions: &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{
				ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: bounds}}}, BucketCounts: counts}}}
	}
	var v *monitoringpb.TypedValue
	kind := metricpb.MetricDescriptor_CUMULATIVE
	switch typ[1] {
	case rollout.MetricPredictions, rollout.MetricErrors:
		n := b.predictions
		if typ[1] == rollout.MetricErrors {
			n = b.errors
		}
		v, kind = &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}, metricpb.MetricDescriptor_DELTA
	case rollout.MetricLatencies:
		bounds := []float64{25, 50, 100, 200, 400, 800}
		counts := make([]int64, len(bounds)+1)
		for i, ub := range bounds {
			if b.latencyMs <= ub {
				counts[i] = b.predictions
				break
			}
		}
		v, kind = dist(bounds, counts), metricpb.MetricDescriptor_DELTA
	case config.MetricPredictionBoxes.CloudType():
		v = dist(config.PredictionBoxBounds, b.boxes)
	case config.MetricPredictionConfidence.CloudType():
		counts := make([]int64, 10)
		counts[8] = 3 * b.boxes[1]
		v = dist(config.PredictionConfidenceBounds, counts)
	case config.MetricPredictionLabels.CloudType():
		var n int64
		for i, c := range b.boxes {
			n += int64(i) * c
		}
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: []*monitoringpb.TimeSeries{{Metric: &metricpb.Metric{Labels: map[string]string{"label": "face"}},
			MetricKind: kind, Points: []*monitoringpb.Point{{Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}}}}}}, nil
	default:
		return &monitoringpb.ListTimeSeriesResponse{}, nil
	}
	return &monitoringpb.ListTimeSeriesResponse{TimeSeries: []*monitoringpb.TimeSeries{{MetricKind: kind, Points: []*monitoringpb.Point{{Value: v}}}}}, nil
}

type harness struct {
	fake  *fakeVertex
	opts  rollout.Options
	store meta.Store
	log   *bytes.Buffer
	now   time.Time
	looks int
}

func newHarness(t *testing.T, canary behaviour) *harness {
	t.Helper()
	f := newFakeVertex(canary)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	aiplatformpb.RegisterModelServiceServer(gs, f)
	aiplatformpb.RegisterEndpointServiceServer(gs, f)
	longrunningpb.RegisterOperationsServer(gs, f)
	monitoringpb.RegisterMetricServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()
	models, err := aiplatform.NewModelClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := aiplatform.NewEndpointClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := monitoring.NewMetricClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
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

// deployedIDs lists the endpoint's deployed models and their traffic.
func (h *harness) endpointState() map[string]int32 {
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	out := map[string]int32{}
	for _, dm := range h.fake.ep.DeployedModels {
		out[dm.Id] = h.fake.ep.TrafficSplit[dm.Id]
	}
	return out
}

func TestHealthyCanaryIsPromoted(t *testing.T) {
	h := newHarness(t, healthy)
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
	if h.fake.upload.GetParentModel() != stableModel || h.fake.upload.GetModel().GetContainerSpec().GetImageUri() != h.opts.Model.Image {
		t.Errorf("upload %v: want a new version under %s", h.fake.upload, stableModel)
	}
	if sp := h.fake.deploy.GetTrafficSplit(); sp["0"] != 10 || sp["111"] != 90 || h.fake.deploy.GetDeployedModel().GetModel() != stableModel+"@2" {
		t.Errorf("deploy %v: want version 2 at 10%% beside the stable 90%%", h.fake.deploy)
	}
	if h.looks != 6 {
		t.Errorf("%d looks over a 30-minute watch every 5 minutes, want 6", h.looks)
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
	drifting := healthy
	drifting.boxes = []int64{70, 10, 5, 5, 5, 5} // finds nothing where the stable version finds faces
	failing := healthy
	failing.errors = 60
	slow := healthy
	slow.latencyMs = 300
	for _, c := range []struct {
		name   string
		canary behaviour
		why    string
	}{
		{"predictions drift", drifting, "predictions drift"},
		{"errors rise", failing, "errors rose"},
		{"latency rises", slow, "p95 over 1.5×"},
		{"too little traffic", behaviour{predictions: 20, latencyMs: 80, boxes: []int64{5, 10, 5, 0, 0, 0}}, "too little canary traffic"},
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
	h := newHarness(t, healthy)
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
	if h.fake.uploads != 1 {
		t.Errorf("%d uploads: resume must not upload again", h.fake.uploads)
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
			h := newHarness(t, healthy)
			h.fake.failNext = method
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
