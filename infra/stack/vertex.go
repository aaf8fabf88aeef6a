package stack

import (
	"fmt"
	"hash/fnv"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/vertex"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// EndpointID is the numeric id of a project's Vertex AI endpoint: stable, derived
// from the project names, 9 digits without a leading zero (a numeric endpoint id
// may have at most 9).
func EndpointID(gcpProject, name string) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s", gcpProject, name)
	return fmt.Sprint(100_000_000 + h.Sum64()%900_000_000)
}

// endpoint: the Vertex AI endpoint models are deployed to (by `visionstack model
// deploy`: Pulumi cannot deploy a model).
func (b *builder) endpoint() error {
	var err error
	b.vertexEndpoint, err = vertex.NewAiEndpoint(b.ctx, b.names.Endpoint, &vertex.AiEndpointArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(EndpointID(b.cfg.GCP.Project, b.cfg.Name)),
		DisplayName: pulumi.String(b.names.Endpoint), Location: pulumi.String(b.cfg.GCP.Region),
		Region: pulumi.String(b.cfg.GCP.Region), Labels: b.labels(),
	}, b.opts()...)
	return err
}
