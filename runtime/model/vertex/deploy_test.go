package vertex_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/model/vertex"
)

// fakeAIPlatform implements ModelService.UploadModel, EndpointService.DeployModel and
// the Operations service: each call starts an operation that is done only when
// polled, so the client must really wait on it.
type fakeAIPlatform struct {
	aiplatformpb.UnimplementedModelServiceServer
	aiplatformpb.UnimplementedEndpointServiceServer
	longrunningpb.UnimplementedOperationsServer
	mu     sync.Mutex
	ops    map[string]proto.Message // operation name → response when done
	upload *aiplatformpb.UploadModelRequest
	deploy *aiplatformpb.DeployModelRequest
	polls  int
}

func (f *fakeAIPlatform) start(name string, resp proto.Message) *longrunningpb.Operation {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[name] = resp
	return &longrunningpb.Operation{Name: name}
}

func (f *fakeAIPlatform) UploadModel(_ context.Context, r *aiplatformpb.UploadModelRequest) (*longrunningpb.Operation, error) {
	f.upload = r
	return f.start("operations/upload", &aiplatformpb.UploadModelResponse{Model: r.Parent + "/models/42"}), nil
}

func (f *fakeAIPlatform) DeployModel(_ context.Context, r *aiplatformpb.DeployModelRequest) (*longrunningpb.Operation, error) {
	f.deploy = r
	if r.DeployedModel.GetModel() != "projects/acme-prod/locations/europe-west3/models/42" {
		return nil, status.Errorf(codes.InvalidArgument, "unknown model %q", r.DeployedModel.GetModel())
	}
	return f.start("operations/deploy", &aiplatformpb.DeployModelResponse{DeployedModel: &aiplatformpb.DeployedModel{Id: "777", Model: r.DeployedModel.Model}}), nil
}

func (f *fakeAIPlatform) GetOperation(_ context.Context, r *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
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

func TestDeployUploadsAndDeploysWaitingOnOperations(t *testing.T) {
	f := &fakeAIPlatform{ops: map[string]proto.Message{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	aiplatformpb.RegisterModelServiceServer(gs, f)
	aiplatformpb.RegisterEndpointServiceServer(gs, f)
	longrunningpb.RegisterOperationsServer(gs, f)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	models, err := aiplatform.NewModelClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := aiplatform.NewEndpointClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	spec := config.ModelDeploy{DisplayName: "acme-model", Image: "europe-west3-docker.pkg.dev/acme-prod/acme/visionstack@sha256:abc",
		Args: []string{"model", "serve"}, PredictRoute: "/predict", HealthRoute: "/health", Port: 8080,
		MachineType: "n1-standard-2", MinReplicas: 1, MaxReplicas: 2}
	var progress bytes.Buffer
	d, err := vertex.Deploy(ctx, models, endpoints, "acme-prod", "europe-west3", "1234567890", spec, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if d.Model != "projects/acme-prod/locations/europe-west3/models/42" || d.DeployedModelID != "777" {
		t.Fatalf("deployment %+v", d)
	}
	if f.polls < 2 {
		t.Errorf("operations polled %d times; the client must wait on both", f.polls)
	}
	cs := f.upload.GetModel().GetContainerSpec()
	if cs.GetImageUri() != spec.Image || cs.GetPredictRoute() != "/predict" || cs.GetPorts()[0].GetContainerPort() != 8080 {
		t.Errorf("container spec %v", cs)
	}
	dr := f.deploy.GetDeployedModel().GetDedicatedResources()
	if f.deploy.GetEndpoint() != "projects/acme-prod/locations/europe-west3/endpoints/1234567890" ||
		dr.GetMachineSpec().GetMachineType() != "n1-standard-2" || dr.GetMaxReplicaCount() != 2 || f.deploy.GetTrafficSplit()["0"] != 100 {
		t.Errorf("deploy request %v", f.deploy)
	}
}
