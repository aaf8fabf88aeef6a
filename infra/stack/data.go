package stack

import (
	"fmt"
	"hash/fnv"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/firestore"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/vertex"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// registry: Docker images of the pipeline, untagged ones cleaned up.
func (b *builder) registry() error {
	_, err := artifactregistry.NewRepository(b.ctx, b.names.Repository, &artifactregistry.RepositoryArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Location: pulumi.String(b.cfg.GCP.Region),
		RepositoryId: pulumi.String(b.names.Repository), Format: pulumi.String("DOCKER"), Labels: b.labels(),
		CleanupPolicies: artifactregistry.RepositoryCleanupPolicyArray{
			artifactregistry.RepositoryCleanupPolicyArgs{Id: pulumi.String("delete-untagged"), Action: pulumi.String("DELETE"),
				Condition: artifactregistry.RepositoryCleanupPolicyConditionArgs{TagState: pulumi.String("UNTAGGED"), OlderThan: pulumi.String("604800s")}},
			artifactregistry.RepositoryCleanupPolicyArgs{Id: pulumi.String("keep-recent"), Action: pulumi.String("KEEP"),
				MostRecentVersions: artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs{KeepCount: pulumi.Int(10)}},
		},
	}, b.opts()...)
	return err
}

// database: a Firestore database of its own, with the index the job list needs.
func (b *builder) database() error {
	var err error
	b.db, err = firestore.NewDatabase(b.ctx, b.names.Database, &firestore.DatabaseArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.Database),
		LocationId: pulumi.String(b.cfg.GCP.Region), Type: pulumi.String("FIRESTORE_NATIVE"),
		DeleteProtectionState: pulumi.String("DELETE_PROTECTION_ENABLED"),
	}, b.opts()...)
	if err != nil {
		return err
	}
	_, err = firestore.NewIndex(b.ctx, b.names.Database+"-jobs-state-updated", &firestore.IndexArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Database: b.db.Name, Collection: pulumi.String(config.JobsCollection),
		Fields: firestore.IndexFieldArray{
			firestore.IndexFieldArgs{FieldPath: pulumi.String("state"), Order: pulumi.String("ASCENDING")},
			firestore.IndexFieldArgs{FieldPath: pulumi.String("updated"), Order: pulumi.String("DESCENDING")},
		},
	}, b.opts()...)
	return err
}

// EndpointID is the numeric id of a project's Vertex AI endpoint: stable, derived
// from the project names, 10 digits without a leading zero (Vertex's rule).
func EndpointID(gcpProject, name string) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s", gcpProject, name)
	return fmt.Sprint(1_000_000_000 + h.Sum64()%9_000_000_000)
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
