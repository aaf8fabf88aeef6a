package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
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
