package vertex_test

import (
	"bytes"
	"context"
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
