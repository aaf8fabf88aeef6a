package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/projects"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// APIs the stack uses.
var APIs = []string{
	"run.googleapis.com", "pubsub.googleapis.com", "storage.googleapis.com", "firestore.googleapis.com",
	"aiplatform.googleapis.com", "artifactregistry.googleapis.com", "monitoring.googleapis.com",
	"iam.googleapis.com", "logging.googleapis.com",
	"cloudresourcemanager.googleapis.com", // project IAM members
	"cloudtrace.googleapis.com",           // the runtime exports traces
}

func (b *builder) services() error {
	for _, api := range APIs {
		s, err := projects.NewService(b.ctx, b.cfg.Name+"-"+api, &projects.ServiceArgs{
			Project: pulumi.String(b.cfg.GCP.Project), Service: pulumi.String(api),
			DisableOnDestroy: pulumi.Bool(false), // other stacks in the project may use the API
		}, b.parent)
		if err != nil {
			return err
		}
		b.apis = append(b.apis, s)
	}
	return nil
}
