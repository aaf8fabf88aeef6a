package vertex

import (
	"context"
	"fmt"
	"io"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"

	"github.com/visionstack/visionstack/runtime/config"
)

// Deployment is what Deploy did.
type Deployment struct {
	Model           string // projects/P/locations/L/models/M
	DeployedModelID string
}

// Deploy uploads the project's model and deploys it to its endpoint, taking all the
// traffic, waiting on both long-running operations. Pulumi cannot deploy a model;
// this is the step after `up`.
func Deploy(ctx context.Context, models *aiplatform.ModelClient, endpoints *aiplatform.EndpointClient,
	gcpProject, region, endpointID string, m config.ModelDeploy, progress io.Writer) (Deployment, error) {
	parent := fmt.Sprintf("projects/%s/locations/%s", gcpProject, region)
	fmt.Fprintf(progress, "uploading model %s (%s)…\n", m.DisplayName, m.Image)
	up, err := models.UploadModel(ctx, UploadRequest(parent, "", m))
	if err != nil {
		return Deployment{}, fmt.Errorf("upload model: %w", err)
	}
	upResp, err := up.Wait(ctx)
	if err != nil {
		return Deployment{}, fmt.Errorf("upload model: %w", err)
	}
	d := Deployment{Model: upResp.GetModel()}
	endpoint := parent + "/endpoints/" + endpointID
	fmt.Fprintf(progress, "uploaded %s; deploying to %s on %s×%d-%d…\n", d.Model, endpoint, m.MachineType, m.MinReplicas, m.MaxReplicas)
	dep, err := endpoints.DeployModel(ctx, &aiplatformpb.DeployModelRequest{
		Endpoint: endpoint, DeployedModel: DeployedModel(d.Model, m),
		TrafficSplit: map[string]int32{"0": 100}, // "0" is the model being deployed
	})
	if err != nil {
		return d, fmt.Errorf("deploy model: %w", err)
	}
	depResp, err := dep.Wait(ctx)
	if err != nil {
		return d, fmt.Errorf("deploy model: %w", err)
	}
	d.DeployedModelID = depResp.GetDeployedModel().GetId()
	fmt.Fprintf(progress, "deployed model %s as %s\n", d.Model, d.DeployedModelID)
	// What was deployed before now has no traffic, but its replicas (min_replica_count
	// ≥ 1) still run and are billed: undeploy it.
	ep, err := endpoints.GetEndpoint(ctx, &aiplatformpb.GetEndpointRequest{Name: endpoint})
	if err != nil {
		return d, fmt.Errorf("read endpoint to undeploy the previous models: %w", err)
	}
	for _, dm := range ep.GetDeployedModels() {
		if dm.GetId() == d.DeployedModelID {
			continue
		}
		fmt.Fprintf(progress, "undeploying the previous deployment %s (%s)…\n", dm.GetId(), dm.GetModel())
		op, err := endpoints.UndeployModel(ctx, &aiplatformpb.UndeployModelRequest{Endpoint: endpoint, DeployedModelId: dm.GetId(),
			TrafficSplit: map[string]int32{d.DeployedModelID: 100}})
		if err == nil {
			_, err = op.Wait(ctx)
		}
		if err != nil {
			return d, fmt.Errorf("undeploy the previous deployment %s: %w (it has no traffic; undeploy it by hand)", dm.GetId(), err)
		}
	}
	return d, nil
}

// UploadRequest uploads the model block m under parent (projects/P/locations/L): a
// new model, or with parentModel a new version of that model.
func UploadRequest(parent, parentModel string, m config.ModelDeploy) *aiplatformpb.UploadModelRequest {
	return &aiplatformpb.UploadModelRequest{Parent: parent, ParentModel: parentModel,
		Model: &aiplatformpb.Model{DisplayName: m.DisplayName, ArtifactUri: m.ArtifactURI, ContainerSpec: &aiplatformpb.ModelContainerSpec{
			ImageUri: m.Image, Args: m.Args, PredictRoute: m.PredictRoute, HealthRoute: m.HealthRoute,
			Ports: []*aiplatformpb.Port{{ContainerPort: int32(m.Port)}}}}}
}

// machine is the block's machine, with its accelerator when it names one (untested).
func machine(m config.ModelDeploy) *aiplatformpb.MachineSpec {
	spec := &aiplatformpb.MachineSpec{MachineType: m.MachineType}
	if m.Accelerator != "" {
		spec.AcceleratorType = aiplatformpb.AcceleratorType(aiplatformpb.AcceleratorType_value[m.Accelerator])
		spec.AcceleratorCount = 1
	}
	return spec
}

// DeployedModel is model (a version: M or M@V) on the resources of the model block m.
func DeployedModel(model string, m config.ModelDeploy) *aiplatformpb.DeployedModel {
	return &aiplatformpb.DeployedModel{Model: model, DisplayName: m.DisplayName,
		PredictionResources: &aiplatformpb.DeployedModel_DedicatedResources{DedicatedResources: &aiplatformpb.DedicatedResources{
			MachineSpec:     machine(m),
			MinReplicaCount: int32(m.MinReplicas), MaxReplicaCount: int32(m.MaxReplicas)}}}
}
