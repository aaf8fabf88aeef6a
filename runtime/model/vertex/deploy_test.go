package vertex_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/model/vertex"
	"github.com/visionstack/visionstack/runtime/rollout/rollouttest"
)

// model deploy uploads the model and deploys it with all the traffic, waiting on
// both long-running operations (the fake answers them only when polled).
func TestDeployUploadsAndDeploysWaitingOnOperations(t *testing.T) {
	f := rollouttest.New(rollouttest.Healthy)
	models, endpoints, _ := f.Clients(t)
	ctx := context.Background()
	spec := config.ModelDeploy{DisplayName: "acme-model", Image: "europe-west3-docker.pkg.dev/acme-prod/acme/visionstack@sha256:abc",
		Args: []string{"model", "serve"}, PredictRoute: "/predict", HealthRoute: "/health", Port: 8080,
		MachineType: "n1-standard-2", MinReplicas: 1, MaxReplicas: 2}
	var progress bytes.Buffer
	d, err := vertex.Deploy(ctx, models, endpoints, "acme-prod", "europe-west3", "555", spec, &progress)
	if err != nil {
		t.Fatal(err)
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if d.Model != rollouttest.Answered("projects/acme-prod/locations/europe-west3/models/43") || d.DeployedModelID != "222" {
		t.Fatalf("deployment %+v", d)
	}
	if f.Polls < 2 {
		t.Errorf("operations polled %d times; the client must wait on both", f.Polls)
	}
	cs := f.Upload.GetModel().GetContainerSpec()
	if cs.GetImageUri() != spec.Image || cs.GetPredictRoute() != "/predict" || cs.GetPorts()[0].GetContainerPort() != 8080 {
		t.Errorf("container spec %v", cs)
	}
	dr := f.Deploy.GetDeployedModel().GetDedicatedResources()
	if f.Deploy.GetEndpoint() != rollouttest.Endpoint ||
		dr.GetMachineSpec().GetMachineType() != "n1-standard-2" || dr.GetMaxReplicaCount() != 2 || f.Deploy.GetTrafficSplit()["0"] != 100 {
		t.Errorf("deploy request %v", f.Deploy)
	}
	f.Mu.Unlock()
	// The stable 111 the fake started with had its traffic taken: undeployed, not left
	// running (and billed) at 0%. So is the first deployment when deploy runs again.
	if got := f.Deployed(); len(got) != 1 || got["222"] != 100 {
		t.Errorf("endpoint %v, want only the new deployment, with all the traffic", got)
	}
	d, err = vertex.Deploy(ctx, models, endpoints, "acme-prod", "europe-west3", "555", spec, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Deployed(); len(got) != 1 || got[d.DeployedModelID] != 100 || d.DeployedModelID != "223" {
		t.Errorf("after a second deploy: endpoint %v, deployment %+v", got, d)
	}
	f.Mu.Lock()
}

// Issue 25: model deploy of a team's ONNX file: the file lands in the model bucket
// under its sha256 (once), and the Vertex model runs visionstack's image serving it
// from its artifact directory (Vertex copies it and says where in AIP_STORAGE_URI).
func TestDeployONNXFile(t *testing.T) {
	f := rollouttest.New(rollouttest.Healthy)
	models, endpoints, _ := f.Clients(t)
	ctx := context.Background()
	bucket, err := local.Open(t.TempDir(), "acme-prod-defects-models")
	if err != nil {
		t.Fatal(err)
	}
	image := "europe-west3-docker.pkg.dev/acme-prod/defects/visionstack@sha256:abc"
	block := config.ModelDeploy{DisplayName: "defects", Image: image, File: "model/defects.onnx", MachineType: "n1-standard-2", MinReplicas: 1, MaxReplicas: 1,
		ONNX: &config.ONNX{Resize: "letterbox"}}
	staged, err := vertex.StageONNX(ctx, bucket, "../../../projects/defects", block)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("../../../projects/defects/model/defects.onnx")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	object := "onnx/" + hex.EncodeToString(sum[:]) + "/defects.onnx"
	stored, _, err := blob.ReadAll(ctx, bucket, object, 0)
	if err != nil || !bytes.Equal(stored, file) {
		t.Fatalf("the model bucket's %s: %d bytes, %v", object, len(stored), err)
	}
	if again, err := vertex.StageONNX(ctx, bucket, "../../../projects/defects", block); err != nil || again.ArtifactURI != staged.ArtifactURI {
		t.Fatalf("staged again: %+v, %v", again, err)
	}
	if _, err := vertex.Deploy(ctx, models, endpoints, "acme-prod", "europe-west3", "555", staged, io.Discard); err != nil {
		t.Fatal(err)
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	m := f.Upload.GetModel()
	cs := m.GetContainerSpec()
	if m.GetArtifactUri() != "gs://acme-prod-defects-models/onnx/"+hex.EncodeToString(sum[:])+"/" || cs.GetImageUri() != image ||
		strings.Join(cs.GetArgs(), " ") != `model serve --model onnx:defects.onnx --onnx {"resize":"letterbox"}` || cs.GetPredictRoute() != "/predict" {
		t.Errorf("uploaded model: artifacts %s, image %s, args %q, predict %s", m.GetArtifactUri(), cs.GetImageUri(), cs.GetArgs(), cs.GetPredictRoute())
	}
}
