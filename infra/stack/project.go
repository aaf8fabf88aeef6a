// Package stack is the per-project Pulumi component: one visionstack:index:Project
// stamps out the same stack for every project, named and sized from its
// projects/<name>/project.yaml. One concern per file.
package stack

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// ComponentType is the Pulumi type token of a project stack.
const ComponentType = "visionstack:index:Project"

// Args beyond the project file.
type Args struct {
	// Image is the pipeline container, by digest (REGION-docker.pkg.dev/P/R/visionstack@sha256:…).
	// Empty: the image the stack last deployed (Deployed), and only on a stack never
	// deployed a placeholder, so the first `up` can create the registry to push to.
	Image string
	// Deployed is the stack's "image" output of its last deployment (nil or "" when
	// there was none): an `up` without an image keeps the pipeline it has instead of
	// swapping it for the placeholder, which would acknowledge and lose every push.
	Deployed pulumi.AnyOutput
	// KMSKey, when set, encrypts the buckets (CMEK).
	KMSKey string
}

// Project is the component and its outputs.
type Project struct {
	pulumi.ResourceState

	IncomingBucket   pulumi.StringOutput `pulumi:"incomingBucket"`
	ProcessedBucket  pulumi.StringOutput `pulumi:"processedBucket"`
	QuarantineBucket pulumi.StringOutput `pulumi:"quarantineBucket"`
	ProcessedTopic   pulumi.StringOutput `pulumi:"processedTopic"`
	ServiceURL       pulumi.StringOutput `pulumi:"serviceUrl"`
	EndpointID       pulumi.StringOutput `pulumi:"endpointId"`
	RepositoryURL    pulumi.StringOutput `pulumi:"repositoryUrl"`
	Image            pulumi.StringOutput `pulumi:"image"` // what the service runs: the next `up` keeps it
}

// PlaceholderImage runs until the first real image is pushed.
const PlaceholderImage = "us-docker.pkg.dev/cloudrun/container/hello"

// NewProject builds every resource of one project under one component.
func NewProject(ctx *pulumi.Context, cfg *config.Project, args Args, opts ...pulumi.ResourceOption) (*Project, error) {
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("project %s is not valid:\n%w", cfg.Name, probs)
	}
	p := &Project{}
	if err := ctx.RegisterComponentResource(ComponentType, cfg.Name, p, opts...); err != nil {
		return nil, err
	}
	b := &builder{ctx: ctx, cfg: cfg, names: cfg.Names(), args: args, parent: pulumi.Parent(p)}
	steps := []func() error{b.services, b.accounts, b.buckets, b.modelFiles, b.registry, b.database, b.endpoint, b.topics, b.service, b.pushPrerequisites, b.subscriptions, b.iam, b.monitoring}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	p.IncomingBucket = b.incoming.Name
	p.ProcessedBucket = b.processed.Name
	p.QuarantineBucket = b.quarantine.Name
	p.ProcessedTopic = b.processedTopic.Name
	p.ServiceURL = b.run.Uri
	p.EndpointID = b.vertexEndpoint.Name
	p.Image = b.image
	p.RepositoryURL = pulumi.Sprintf("%s-docker.pkg.dev/%s/%s", cfg.GCP.Region, cfg.GCP.Project, b.names.Repository)
	return p, ctx.RegisterResourceOutputs(p, pulumi.Map{
		"incomingBucket": p.IncomingBucket, "processedBucket": p.ProcessedBucket, "quarantineBucket": p.QuarantineBucket,
		"processedTopic": p.ProcessedTopic, "serviceUrl": p.ServiceURL, "endpointId": p.EndpointID, "repositoryUrl": p.RepositoryURL,
		"image": p.Image,
	})
}
