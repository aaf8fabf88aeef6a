// Package rollouttest is a fake Vertex AI (ModelService, EndpointService, the
// Operations service) and Cloud Monitoring (MetricService) on a local gRPC server,
// for rollout's tests and the CLI's: the real Google clients talk to it.
//
// It answers as the real services do where our code could otherwise rely on an
// assumption of ours:
//   - names in answers carry the project's number where requests carry its id
//     (Vertex AI's deploy-model docs answer projects/PROJECT_NUMBER/…);
//   - a distribution point lists bucket counts only up to its last non-empty bucket
//     ("If you supply fewer than N values, the remaining values are assumed to be 0",
//     google/api/distribution.proto), delta series have a point a minute, the
//     runtime's cumulative series one per instance;
//   - prediction_latencies has a series per latency_type (model, overhead, total:
//     cloud.google.com/monitoring/api/metrics_gcp, aiplatform); prediction_count
//     counts predictions served, error_count the failures;
//   - a DeployModel operation may still be running when polled (Hold) or end in an
//     error (FailDeploy: a container that never passes its health check); the
//     deployment and its traffic take effect when it completes;
//   - every model has exactly one version with the alias "default" (model.proto).
package rollouttest

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
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
	ProjectNumber  = "123456789"
)

// Answered is name as the fake's answers spell it: with the project's number.
func Answered(name string) string {
	return strings.Replace(name, "projects/acme-prod/", "projects/"+ProjectNumber+"/", 1)
}

// asked is a name from a request, with the project's id or number, as the fake keeps it.
func asked(name string) string {
	return strings.Replace(name, "projects/"+ProjectNumber+"/", "projects/acme-prod/", 1)
}

// Behaviour is what the fake's metrics say about a version.
type Behaviour struct {
	Predictions, Errors int64
	LatencyMs           float64 // every prediction's latency
	Boxes               []int64 // images per 0, 1, 2, 3, 4-5, 6+ detections
	// Minutes, when set, are the watch's minutes, newest first, each with its own
	// figures (Predictions, Errors and LatencyMs are then unused).
	Minutes []Minute
}

// Minute is one minute of a version's traffic: Slow of its predictions take SlowMs,
// the others LatencyMs.
type Minute struct {
	Predictions, Errors int64
	LatencyMs           float64
	Slow                int64
	SlowMs              float64
}

func (b Behaviour) minutes() []Minute {
	if b.Minutes != nil {
		return b.Minutes
	}
	return []Minute{{Predictions: b.Predictions, Errors: b.Errors, LatencyMs: b.LatencyMs}}
}

// OverheadMs is Vertex's own share of every prediction's latency (latency_type
// overhead; model is the rest, total the whole).
const OverheadMs = 5

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

	Mu         sync.Mutex
	EP         *aiplatformpb.Endpoint
	ShadowEP   *aiplatformpb.Endpoint
	ops        map[string]*operation
	Upload     *aiplatformpb.UploadModelRequest
	Deploy     *aiplatformpb.DeployModelRequest
	Uploads    int
	Deploys    int                 // DeployModel calls
	FailNext   string              // a method that fails once with Unavailable
	Polls      int                 // GetOperation calls: clients really wait on operations
	Hold       bool                // DeployModel operations stay running while set
	FailDeploy error               // DeployModel operations end in this error
	Filters    []string            // every ListTimeSeries filter, in order
	Aliases    map[string][]string // model version → its aliases
	deployed   map[*aiplatformpb.Endpoint]int
	canary     Behaviour
	stable     Behaviour
}

// operation is a long-running operation: apply runs when it completes.
type operation struct {
	resp   proto.Message
	apply  func() error
	err    error
	deploy bool
	done   bool
}

// New is a fake whose canary behaves as canary.
func New(canary Behaviour) *Fake {
	return &Fake{ops: map[string]*operation{}, deployed: map[*aiplatformpb.Endpoint]int{}, canary: canary, stable: Steady, Aliases: map[string][]string{"1": {"default"}},
		ShadowEP: &aiplatformpb.Endpoint{Name: Answered(ShadowEndpoint)},
		EP: &aiplatformpb.Endpoint{Name: Answered(Endpoint), TrafficSplit: map[string]int32{"111": 100},
			DeployedModels: []*aiplatformpb.DeployedModel{{Id: "111", Model: Answered(StableModel), ModelVersionId: "1"}}}}
}

func (f *Fake) fail(method string) error {
	if f.FailNext == method {
		f.FailNext = ""
		return status.Error(codes.Unavailable, method+": connection reset")
	}
	return nil
}

func (f *Fake) op(name string, resp proto.Message, apply func() error) *longrunningpb.Operation {
	f.ops[name] = &operation{resp: resp, apply: apply}
	return &longrunningpb.Operation{Name: name}
}

func (f *Fake) GetOperation(_ context.Context, r *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Polls++
	o, ok := f.ops[r.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "operation %s", r.Name)
	}
	if !o.done {
		if o.deploy && f.Hold {
			return &longrunningpb.Operation{Name: r.Name}, nil
		}
		o.done = true
		switch {
		case o.deploy && f.FailDeploy != nil:
			o.err = f.FailDeploy
		case o.apply != nil:
			o.err = o.apply()
		}
	}
	if o.err != nil {
		st, _ := status.FromError(o.err)
		return &longrunningpb.Operation{Name: r.Name, Done: true, Result: &longrunningpb.Operation_Error{Error: st.Proto()}}, nil
	}
	a, err := anypb.New(o.resp)
	if err != nil {
		return nil, err
	}
	return &longrunningpb.Operation{Name: r.Name, Done: true, Result: &longrunningpb.Operation_Response{Response: a}}, nil
}

// MergeVersionAliases gives a version aliases; "default" leaves the version that had
// it (a model has exactly one default version).
func (f *Fake) MergeVersionAliases(_ context.Context, r *aiplatformpb.MergeVersionAliasesRequest) (*aiplatformpb.Model, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	model, version, ok := strings.Cut(asked(r.Name), "@")
	if !ok || model != StableModel {
		return nil, status.Errorf(codes.InvalidArgument, "name %q: want %s@VERSION", r.Name, StableModel)
	}
	for _, a := range r.VersionAliases {
		for v, as := range f.Aliases {
			f.Aliases[v] = slices.DeleteFunc(as, func(x string) bool { return x == a })
		}
		f.Aliases[version] = append(f.Aliases[version], a)
	}
	return &aiplatformpb.Model{Name: Answered(model), VersionId: version, VersionAliases: f.Aliases[version]}, nil
}

// Default is the model's default version.
func (f *Fake) Default() string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for v, as := range f.Aliases {
		if slices.Contains(as, "default") {
			return v
		}
	}
	return ""
}

func (f *Fake) UploadModel(_ context.Context, r *aiplatformpb.UploadModelRequest) (*longrunningpb.Operation, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if err := f.fail("UploadModel"); err != nil {
		return nil, err
	}
	f.Upload, f.Uploads = r, f.Uploads+1
	resp := &aiplatformpb.UploadModelResponse{Model: Answered(asked(r.ParentModel)), ModelVersionId: "2"}
	if r.ParentModel == "" { // a new model (model deploy), not a version of one
		resp = &aiplatformpb.UploadModelResponse{Model: Answered(asked(r.Parent)) + "/models/43", ModelVersionId: "1"}
	}
	return f.op(fmt.Sprintf("operations/upload-%d", f.Uploads), resp, nil), nil
}

// endpoint is the endpoint named name: the main one (EP) or the shadow one.
func (f *Fake) endpoint(name string) (*aiplatformpb.Endpoint, error) {
	for _, ep := range []*aiplatformpb.Endpoint{f.EP, f.ShadowEP} {
		if asked(ep.Name) == asked(name) {
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
	f.Deploy, f.Deploys = r, f.Deploys+1
	model, version, _ := strings.Cut(r.DeployedModel.Model, "@")
	// Ids in the order of deployment: 222, 223… on the endpoint, 333… on the shadow one.
	first := map[*aiplatformpb.Endpoint]int{f.EP: 222, f.ShadowEP: 333}[ep]
	f.deployed[ep]++
	dm := &aiplatformpb.DeployedModel{Id: fmt.Sprint(first + f.deployed[ep] - 1), Model: Answered(asked(model)), ModelVersionId: version}
	split := map[string]int32{}
	for id, v := range r.TrafficSplit {
		if id == "0" {
			id = dm.Id
		}
		split[id] = v
	}
	o := f.op(fmt.Sprintf("operations/deploy-%d", f.Deploys), &aiplatformpb.DeployModelResponse{DeployedModel: dm}, func() error {
		// Only a finished deployment is listed and gets its traffic.
		ep.DeployedModels = append(ep.DeployedModels, dm)
		if err := setTraffic(ep, split); err != nil {
			ep.DeployedModels = ep.DeployedModels[:len(ep.DeployedModels)-1]
			return err
		}
		return nil
	})
	f.ops[o.Name].deploy = true
	return o, nil
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
	return f.op("operations/undeploy-"+r.DeployedModelId, &aiplatformpb.UndeployModelResponse{}, nil), nil
}

var (
	reType    = regexp.MustCompile(`metric.type="([^"]+)"`)
	reDeploy  = regexp.MustCompile(`deployed_model_id="([^"]+)"`)
	reVersion = regexp.MustCompile(`model_version=ends_with\("([^"]+)"\)`)
	reLatency = regexp.MustCompile(`latency_type="([^"]+)"`)
)

// LatencyBounds are the fake's latency buckets (ms).
var LatencyBounds = []float64{25, 50, 100, 200, 400, 800}

func (f *Fake) ListTimeSeries(_ context.Context, r *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Filters = append(f.Filters, r.Filter)
	typ := reType.FindStringSubmatch(r.Filter)
	if typ == nil || r.Interval.GetStartTime() == nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q, interval %v", r.Filter, r.Interval)
	}
	version := func(v string) bool {
		m := reVersion.FindStringSubmatch(r.Filter)
		return m != nil && strings.HasSuffix(StableModel+"@"+v, m[1]) && strings.HasPrefix(m[1], "/locations/")
	}
	var b Behaviour
	switch {
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "111", version("1"):
		b = f.stable
	case reDeploy.MatchString(r.Filter) && reDeploy.FindStringSubmatch(r.Filter)[1] == "222", version("2"):
		b = f.canary
	default:
		return &monitoringpb.ListTimeSeriesResponse{}, nil
	}
	var out []*monitoringpb.TimeSeries
	series := func(kind metricpb.MetricDescriptor_MetricKind, labels map[string]string, values ...*monitoringpb.TypedValue) {
		ts := &monitoringpb.TimeSeries{MetricKind: kind, Metric: &metricpb.Metric{Type: typ[1], Labels: labels}}
		for _, v := range values {
			ts.Points = append(ts.Points, &monitoringpb.Point{Value: v})
		}
		out = append(out, ts)
	}
	count := func(n int64) *monitoringpb.TypedValue {
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}
	}
	switch typ[1] {
	case rollout.MetricPredictions, rollout.MetricErrors: // a delta point a minute
		var vs []*monitoringpb.TypedValue
		for _, m := range b.minutes() {
			n := m.Predictions
			if typ[1] == rollout.MetricErrors {
				n = m.Errors
			}
			vs = append(vs, count(n))
		}
		series(metricpb.MetricDescriptor_DELTA, nil, vs...)
	case rollout.MetricLatencies: // a series per latency type, a delta point a minute
		want := reLatency.FindStringSubmatch(r.Filter)
		for _, lt := range []string{"model", "overhead", "total"} {
			if want != nil && want[1] != lt {
				continue
			}
			var vs []*monitoringpb.TypedValue
			for _, m := range b.minutes() {
				counts := make([]int64, len(LatencyBounds)+1)
				for _, part := range []struct {
					n  int64
					ms float64
				}{{m.Predictions - m.Slow, m.LatencyMs}, {m.Slow, m.SlowMs}} {
					ms := map[string]float64{"model": part.ms - OverheadMs, "overhead": OverheadMs, "total": part.ms}[lt]
					counts[sort.SearchFloat64s(LatencyBounds, ms)] += part.n
				}
				vs = append(vs, dist(LatencyBounds, counts))
			}
			series(metricpb.MetricDescriptor_DELTA, map[string]string{"latency_type": lt}, vs...)
		}
	case config.MetricPredictionBoxes.CloudType(), config.MetricPredictionConfidence.CloudType():
		counts, bounds := b.Boxes, config.PredictionBoxBounds
		if typ[1] == config.MetricPredictionConfidence.CloudType() {
			counts, bounds = make([]int64, len(config.PredictionConfidenceBounds)+1), config.PredictionConfidenceBounds
			if len(b.Boxes) > 1 {
				counts[8] = 3 * b.Boxes[1]
			}
		}
		// Two instances, each cumulative: its newest point first, an older one after.
		for _, part := range instances(counts) {
			series(metricpb.MetricDescriptor_CUMULATIVE, nil, dist(bounds, part), dist(bounds, halve(part)))
		}
	case config.MetricPredictionLabels.CloudType():
		var n int64
		for i, c := range b.Boxes {
			n += int64(i) * c
		}
		for _, part := range instances([]int64{n}) {
			series(metricpb.MetricDescriptor_CUMULATIVE, map[string]string{"label": "face"}, count(part[0]), count(part[0]/2))
		}
	}
	return &monitoringpb.ListTimeSeriesResponse{TimeSeries: out}, nil
}

// dist is a distribution point whose bucket counts stop at the last non-empty one.
func dist(bounds []float64, counts []int64) *monitoringpb.TypedValue {
	n := len(counts)
	for n > 0 && counts[n-1] == 0 {
		n--
	}
	return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: &distribution.Distribution{
		BucketOptions: &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{
			ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: bounds}}}, BucketCounts: slices.Clone(counts[:n])}}}
}

// instances splits counts between two instances' series.
func instances(counts []int64) [2][]int64 {
	var p [2][]int64
	for _, c := range counts {
		p[0], p[1] = append(p[0], c/2), append(p[1], c-c/2)
	}
	return p
}

func halve(counts []int64) []int64 {
	out := make([]int64, len(counts))
	for i, c := range counts {
		out[i] = c / 2
	}
	return out
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

// Ops are the long-running operations the fake started, by name, and whether each
// has completed.
func (f *Fake) Ops() map[string]bool {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	out := map[string]bool{}
	for name, o := range f.ops {
		out[name] = o.done
	}
	return out
}
