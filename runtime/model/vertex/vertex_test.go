package vertex_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	aiplatformv1beta1 "cloud.google.com/go/aiplatform/apiv1beta1"
	betapb "cloud.google.com/go/aiplatform/apiv1beta1/aiplatformpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/model/vertex"
	"github.com/visionstack/visionstack/runtime/modelserver"
	"github.com/visionstack/visionstack/testdata/photos"
)

const endpoint = "projects/p/locations/europe-west3/endpoints/123"

// fakeVertex is our own PredictionService: it answers with the built-in model, after
// failing the first `unavailable` calls with UNAVAILABLE (a 503).
type fakeVertex struct {
	aiplatformpb.UnimplementedPredictionServiceServer
	inner       model.Predictor
	unavailable int32
	calls       atomic.Int32
}

func (f *fakeVertex) Predict(ctx context.Context, req *aiplatformpb.PredictRequest) (*aiplatformpb.PredictResponse, error) {
	if f.calls.Add(1) <= f.unavailable {
		return nil, status.Error(codes.Unavailable, "try again")
	}
	if req.Endpoint != endpoint {
		return nil, status.Errorf(codes.NotFound, "endpoint %q", req.Endpoint)
	}
	var ins []model.Instance
	for _, v := range req.Instances {
		raw, _ := v.MarshalJSON()
		var in model.Instance
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		ins = append(ins, in)
	}
	var params model.Parameters
	raw, _ := req.Parameters.MarshalJSON()
	_ = json.Unmarshal(raw, &params)
	preds, err := f.inner.Predict(ctx, ins, params)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &aiplatformpb.PredictResponse{DeployedModelId: "builtin"}
	for _, p := range preds {
		raw, _ := json.Marshal(p)
		var generic any
		_ = json.Unmarshal(raw, &generic)
		v, _ := structpb.NewValue(generic)
		resp.Predictions = append(resp.Predictions, v)
	}
	return resp, nil
}

func builtinModel(t *testing.T) model.Predictor {
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func instance(t *testing.T) model.Instance {
	img, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	return model.Instance{Content: base64.StdEncoding.EncodeToString(img), MimeType: "image/jpeg"}
}

func dial(t *testing.T, f *fakeVertex, o vertex.Options) *vertex.Model {
	t.Helper()
	return dialServer(t, f, o)
}

func dialServer(t *testing.T, f aiplatformpb.PredictionServiceServer, o vertex.Options) *vertex.Model {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	aiplatformpb.RegisterPredictionServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	o.Endpoint = endpoint
	o.ClientOption = []option.ClientOption{option.WithGRPCConn(conn)}
	m, err := vertex.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The aiplatform gRPC client against our own PredictionService: two UNAVAILABLE
// answers are retried, then AutoML detection predictions come back parsed.
func TestPredictRetriesUnavailable(t *testing.T) {
	f := &fakeVertex{inner: builtinModel(t), unavailable: 2}
	m := dial(t, f, vertex.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	preds, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 5})
	if err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 3 || len(preds) != 1 || len(preds[0].BBoxes) == 0 || preds[0].Validate(true) != nil {
		t.Fatalf("calls %d, predictions %+v", f.calls.Load(), preds)
	}
}

func TestPredictGivesUpAsTransient(t *testing.T) {
	f := &fakeVertex{inner: builtinModel(t), unavailable: 100}
	m := dial(t, f, vertex.Options{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{})
	if err == nil || fault.IsPermanent(err) || f.calls.Load() != 3 {
		t.Fatalf("after 3 UNAVAILABLE: %v (calls %d); want a transient error", err, f.calls.Load())
	}
}

// A request over the endpoint's cap is not sent; it is the project's setting
// (prepare.payloadLimit above the endpoint's limit), not the image's fault.
func TestRequestSizeChecked(t *testing.T) {
	f := &fakeVertex{inner: builtinModel(t)}
	m := dial(t, f, vertex.Options{MaxRequest: 1000})
	_, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{})
	if !errors.Is(err, model.ErrConfig) || f.calls.Load() != 0 {
		t.Fatalf("oversized request: %v, %d calls", err, f.calls.Load())
	}
}

// The cap is on the JSON body the container receives ({"instances", "parameters"}),
// not on the gRPC message: a request whose body is exactly the cap is sent, one byte
// over is refused (the proto, with the endpoint's name in it, is another size).
func TestRequestSizeIsTheJSONBody(t *testing.T) {
	in := []model.Instance{{Content: strings.Repeat("A", 4000), MimeType: "image/jpeg"}}
	params := model.Parameters{ConfidenceThreshold: 0.5}
	body, err := vertex.BodySize(in, params)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(map[string]any{"instances": in, "parameters": params}); len(raw) != body {
		t.Fatalf("BodySize %d, the body is %d bytes", body, len(raw))
	}
	f := &fakeVertex{inner: builtinModel(t)}
	_, err = dial(t, f, vertex.Options{MaxRequest: body}).Predict(context.Background(), in, params)
	if errors.Is(err, model.ErrConfig) || f.calls.Load() == 0 {
		t.Fatalf("a body of exactly the cap (%d bytes) was refused: %v", body, err)
	}
	calls := f.calls.Load()
	if _, err := dial(t, f, vertex.Options{MaxRequest: body - 1}).Predict(context.Background(), in, params); !errors.Is(err, model.ErrConfig) || f.calls.Load() != calls {
		t.Fatalf("a body one byte over the cap: %v", err)
	}
}

// The aiplatform REST client, unchanged, pointed at `model serve`: the built-in
// model's HTTP server speaks the Vertex predict contract.
func TestRESTClientAgainstModelServe(t *testing.T) {
	hs := httptest.NewServer(modelserver.Handler(builtinModel(t), modelserver.Options{Routes: modelserver.RoutesFromEnv(), ModelID: "builtin-faces"}))
	defer hs.Close()
	ctx := context.Background()
	c, err := aiplatformv1beta1.NewPredictionRESTClient(ctx, option.WithEndpoint(hs.URL), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := vertex.Request(endpoint, []model.Instance{instance(t)}, model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 5})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Predict(ctx, &betapb.PredictRequest{Endpoint: req.Endpoint, Instances: req.Instances, Parameters: req.Parameters})
	if err != nil {
		t.Fatal(err)
	}
	preds, err := vertex.Parse(&aiplatformpb.PredictResponse{Predictions: resp.Predictions, DeployedModelId: resp.DeployedModelId})
	if err != nil || len(preds) != 1 || len(preds[0].BBoxes) == 0 || resp.DeployedModelId != "builtin-faces" {
		t.Fatalf("REST predict: %+v %v (%s)", preds, err, resp.DeployedModelId)
	}
}

// Every prediction says which model version answered and which deployment served it.
func TestParseRecordsTheModelVersion(t *testing.T) {
	v, err := structpb.NewValue(map[string]any{"ids": []any{"0"}, "displayNames": []any{"face"}, "confidences": []any{0.9},
		"bboxes": []any{[]any{0.1, 0.2, 0.3, 0.4}}})
	if err != nil {
		t.Fatal(err)
	}
	preds, err := vertex.Parse(&aiplatformpb.PredictResponse{Predictions: []*structpb.Value{v}, DeployedModelId: "4711",
		Model: "projects/p/locations/europe-west3/models/faces", ModelVersionId: "3"})
	if err != nil || len(preds) != 1 {
		t.Fatal(preds, err)
	}
	if preds[0].Version != "projects/p/locations/europe-west3/models/faces@3" || preds[0].Deployed != "4711" {
		t.Fatalf("version %q, deployed %q", preds[0].Version, preds[0].Deployed)
	}
}
