// Package rollouttest is a fake Vertex AI (ModelService, EndpointService, the
// Operations service) and Cloud Monitoring (MetricService) on a local gRPC server,
// for rollout's tests and the CLI's: the real Google clients talk to it.
package rollouttest

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

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
	"github.com/visionstack/visionstack/runtime/rollout"
)

// The endpoint and stable model the fake starts with: deployed model 111, version 1
// of StableModel, with all the traffic. A deployed canary is 222.
const (
	Endpoint       = "projects/acme-prod/locations/europe-west3/endpoints/555"
	ShadowEndpoint = "projects/acme-prod/locations/europe-west3/endpoints/556" // empty at first; a deployment there is 333
	StableModel    = "projects/acme-prod/locations/europe-west3/models/42"
)

// Behaviour is what the fake's metrics say about a version.
type Behaviour struct {
	Predictions, Errors int64
	LatencyMs           float64 // every prediction's latency
	Boxes               []int64 // images per 0, 1, 2, 3, 4-5, 6+ detections
}

var (
	// Healthy is a canary like the stable version; Steady the stable version.
	Healthy = Behaviour{Predictions: 400, Errors: 1, LatencyMs: 80, Boxes: []int64{20, 40, 20, 10, 5, 5}}
	Steady  = Behaviour{Predictions: 4000, Errors: 10, LatencyMs: 75, Boxes: []int64{200, 400, 200, 100, 50, 50}}
)

// Fake speaks ModelService, EndpointService, Operations and MetricService.
type Fake struct {
	aiplatformpb.UnimplementedModelServiceServer
	aiplatformpb.UnimplementedEndpointServiceServer
	longrunningpb.UnimplementedOperationsServer
	monitoringpb.UnimplementedMetricServiceServer

	Mu       sync.Mutex
	EP       *aiplatformpb.Endpoint
	ShadowEP *aiplatformpb.Endpoint
	ops      map[string]proto.Message
	Upload   *aiplatformpb.UploadModelRequest
	Deploy   *aiplatformpb.DeployModelRequest
	Uploads  int
	FailNext string // a method that fails once with Unavailable
	Polls    int    // GetOperation calls: clients really wait on operations
	canary   Behaviour
	stable   Behaviour
}

// New is a fake whose canary behaves as canary.
func New(canary Behaviour) *Fake {
	return &Fake{ops: map[string]proto.Message{}, canary: canary, stable: Steady,
		ShadowEP: &aiplatformpb.Endpoint{Name: ShadowEndpoint},
		EP: &aiplatformpb.Endpoint{Name: Endpoint, TrafficSplit: map[string]int32{"111": 100},
			DeployedModels: []*aiplatformpb.DeployedModel{{Id: "111", Model: StableModel, ModelVersionId: "1"}}}}
}

func (f *Fake) fail(method string) error {
	if f.FailNext == method {
		f.FailNext = ""
		return status.Error(codes.Unavailable, method+": connection reset")
	}
	return nil
}

func (f *Fake) op(name string, resp proto.Message) *longrunningpb.Operation {
	f.ops[name] = resp
	return &longrunningpb.Operation{Name: name}
}

func (f *Fake) GetOperation(_ context.Context, r *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Polls++
	resp, ok := f.ops[r.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "operation %s", r.Name)
	}
	a, err := anypb.New(resp)
	if err != nil {
		return nil, err
	}
	return &longrunningpb.Operation{Name: r.Name, Done: true, Result: &longrunningpb.Operation_Response{Response: a}}, nil
}

func (f *Fake) UploadModel(_ context.Context, r *aiplatformpb.UploadModelRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if err := f.fail("UploadModel"); err != nil {
		return nil, err
	}
	f.Upload, f.Uploads = r, f.Uploads+1
	resp := &aiplatformpb.UploadModelResponse{Model: r.ParentModel, ModelVersionId: "2"}
	if r.ParentModel == "" { // a new model (model deploy), not a version of one
		resp = &aiplatformpb.UploadModelResponse{Model: r.Parent + "/models/43", ModelVersionId: "1"}
	}
	return f.op(fmt.Sprintf("operations/upload-%d", f.Uploads), resp), nil
}

// endpoint is the endpoint named name: the main one (EP) or the shadow one.
func (f *Fake) endpoint(name string) (*aiplatformpb.Endpoint, error) {
	for _, ep := range []*aiplatformpb.Endpoint{f.EP, f.ShadowEP} {
		if ep.Name == name {
			return ep, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "endpoint %s", name)
}

func (f *Fake) GetEndpoint(_ context.Context, r *aiplatformpb.GetEndpointRequest) (*aiplatformpb.Endpoint, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	ep, err := f.endpoint(r.Name)
	if err != nil {
		return nil, err
	}
	return proto.Clone(ep).(*aiplatformpb.Endpoint), nil
}

func setTraffic(ep *aiplatformpb.Endpoint, split map[string]int32) error {
	var sum int32
	for id, v := range split {
		sum += v
		if !deployed(ep, id) {
			return status.Errorf(codes.InvalidArgument, "traffic for %s, which is not deployed", id)
		}
	}
	if sum != 100 && len(ep.DeployedModels) > 0 {
		return status.Errorf(codes.InvalidArgument, "traffic split %v does not add up to 100", split)
	}
	ep.TrafficSplit = split
	return nil
}

func deployed(ep *aiplatformpb.Endpoint, id string) bool {
	for _, dm := range ep.DeployedModels {
		if dm.Id == id {
			return true
		}
	}
	return false
}

func (f *Fake) DeployModel(_ context.Context, r *aiplatformpb.DeployModelRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if err := f.fail("DeployModel"); err != nil {
		return nil, err
	}
	ep, err := f.endpoint(r.Endpoint)
	if err != nil {
		return nil, err
	}
	f.Deploy = r
	model, version, _ := strings.Cut(r.DeployedModel.Model, "@")
	dm := &aiplatformpb.DeployedModel{Id: "222", Model: model, ModelVersionId: version}
	if ep == f.ShadowEP {
		dm.Id = "333"
	}
	ep.DeployedModels = append(ep.DeployedModels, dm)
	split := map[string]int32{}
	for id, v := range r.TrafficSplit {
		if id == "0" {
			id = dm.Id
		}
		split[id] = v
	}
	if err := setTraffic(ep, split); err != nil {
		return nil, err
	}
	return f.op("operations/deploy", &aiplatformpb.DeployModelResponse{DeployedModel: dm}), nil
}

func (f *Fake) UpdateEndpoint(_ context.Context, r *aiplatformpb.UpdateEndpointRequest) (*aiplatformpb.Endpoint, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if err := f.fail("UpdateEndpoint"); err != nil {
		return nil, err
	}
	if len(r.UpdateMask.GetPaths()) != 1 || r.UpdateMask.Paths[0] != "traffic_split" {
		return nil, status.Errorf(codes.InvalidArgument, "update mask %v", r.UpdateMask)
	}
	ep, err := f.endpoint(r.Endpoint.GetName())
	if err != nil {
		return nil, err
	}
	if err := setTraffic(ep, r.Endpoint.TrafficSplit); err != nil {
		return nil, err
	}
	return proto.Clone(ep).(*aiplatformpb.Endpoint), nil
}

func (f *Fake) UndeployModel(_ context.Context, r *aiplatformpb.UndeployModelRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	ep, err := f.endpoint(r.Endpoint)
	if err != nil {
		return nil, err
	}
	if ep.TrafficSplit[r.DeployedModelId] != 0 && r.TrafficSplit == nil && len(ep.DeployedModels) > 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "%s still has traffic", r.DeployedModelId)
	}
	var kept []*aiplatformpb.DeployedModel
	for _, dm := range ep.DeployedModels {
		if dm.Id != r.DeployedModelId {
			kept = append(kept, dm)
		}
	}
	ep.DeployedModels = kept
	if len(kept) == 0 {
		ep.TrafficSplit = nil
	} else if r.TrafficSplit != nil {
		if err := setTraffic(ep, r.TrafficSplit); err != nil {
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

func (f *Fake) ListTimeSeries(_ context.Context, r *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	typ := reType.FindStringSubmatch(r.Filter)
	if typ == nil || r.Interval.GetStartTime() == nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q, interval %v", r.Filter, r.Interval)
	}
	var b Behaviour
	switch {
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "111",
		reVersion.MatchString(r.Filter) && reVersion.FindStringSubmatch(r.Filter)[1] == StableModel+"@1":
		b = f.stable
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "222",
		reVersion.MatchString(r.Filter) && reVersion.FindStringSubmatch(r.Filter)[1] == StableModel+"@2":
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
		n := b.Predictions
		if typ[1] == rollout.MetricErrors {
			n = b.Errors
		}
		v, kind = &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}, metricpb.MetricDescriptor_DELTA
	case rollout.MetricLatencies:
		bounds := []float64{25, 50, 100, 200, 400, 800}
		counts := make([]int64, len(bounds)+1)
		for i, ub := range bounds {
			if b.LatencyMs <= ub {
				counts[i] = b.Predictions
				break
			}
		}
		v, kind = dist(bounds, counts), metricpb.MetricDescriptor_DELTA
	case config.MetricPredictionBoxes.CloudType():
		v = dist(config.PredictionBoxBounds, b.Boxes)
	case config.MetricPredictionConfidence.CloudType():
		counts := make([]int64, 10)
		counts[8] = 3 * b.Boxes[1]
		v = dist(config.PredictionConfidenceBounds, counts)
	case config.MetricPredictionLabels.CloudType():
		var n int64
		for i, c := range b.Boxes {
			n += int64(i) * c
		}
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: []*monitoringpb.TimeSeries{{Metric: &metricpb.Metric{Labels: map[string]string{"label": "face"}},
			MetricKind: kind, Points: []*monitoringpb.Point{{Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}}}}}}, nil
	default:
		return &monitoringpb.ListTimeSeriesResponse{}, nil
	}
	return &monitoringpb.ListTimeSeriesResponse{TimeSeries: []*monitoringpb.TimeSeries{{MetricKind: kind, Points: []*monitoringpb.Point{{Value: v}}}}}, nil
}

// Serve starts f on a local port for the test and returns its address.
func (f *Fake) Serve(t testing.TB) string {
	t.Helper()
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
	return lis.Addr().String()
}

// Clients are the real Google clients of f's services, connected to it.
func (f *Fake) Clients(t testing.TB) (*aiplatform.ModelClient, *aiplatform.EndpointClient, *monitoring.MetricClient) {
	t.Helper()
	conn, err := grpc.NewClient(f.Serve(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	return models, endpoints, metrics
}

// Deployed lists the endpoint's deployed models and their traffic.
func (f *Fake) Deployed() map[string]int32 {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	out := map[string]int32{}
	for _, dm := range f.EP.DeployedModels {
		out[dm.Id] = f.EP.TrafficSplit[dm.Id]
	}
	return out
}
