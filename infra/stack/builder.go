package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/cloudrunv2"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/firestore"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/pubsub"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/vertex"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// builder carries what the per-concern files create for each other.
type builder struct {
	ctx    *pulumi.Context
	cfg    *config.Project
	names  config.Names
	args   Args
	parent pulumi.ResourceOption

	apis           []pulumi.Resource
	pipelineSA     *serviceaccount.Account
	invokerSA      *serviceaccount.Account
	incoming       *storage.Bucket
	processed      *storage.Bucket
	quarantine     *storage.Bucket
	models         *storage.Bucket
	modelPins      pulumi.StringOutput // VISIONSTACK_ONNX_PINS; empty when the project has no onnx: files
	uploadedTopic  *pubsub.Topic
	processedTopic *pubsub.Topic
	deadTopic      *pubsub.Topic
	pushSub        *pubsub.Subscription
	deadSub        *pubsub.Subscription
	run            *cloudrunv2.Service
	db             *firestore.Database
	vertexEndpoint *vertex.AiEndpoint
	gcsAgentEmail  *pulumi.StringOutput
	pubsubAgent    pulumi.StringOutput // IAM member of the Pub/Sub service agent
	pushGrants     []pulumi.Resource   // what the push subscription needs before it exists
	image          pulumi.StringOutput // the pipeline image the service runs
}

// gcsAgent is the Cloud Storage service agent's e-mail. The look-up waits for the
// APIs (a plain invoke would run before anything is enabled on a fresh project).
func (b *builder) gcsAgent() pulumi.StringOutput {
	if b.gcsAgentEmail == nil {
		out := b.ctx.InvokeOutput("gcp:storage/getProjectServiceAccount:getProjectServiceAccount",
			storage.GetProjectServiceAccountOutputArgs{Project: pulumi.String(b.cfg.GCP.Project)},
			storage.GetProjectServiceAccountResultOutput{},
			pulumi.InvokeOutputOptions{InvokeOptions: []pulumi.InvokeOption{pulumi.DependsOn(b.apis)}}).(storage.GetProjectServiceAccountResultOutput)
		e := out.EmailAddress()
		b.gcsAgentEmail = &e
	}
	return *b.gcsAgentEmail
}

// opts are the options of a child resource: parented to the component, after the APIs.
func (b *builder) opts(extra ...pulumi.ResourceOption) []pulumi.ResourceOption {
	return append([]pulumi.ResourceOption{b.parent, pulumi.DependsOn(b.apis)}, extra...)
}

func (b *builder) labels() pulumi.StringMap {
	return pulumi.StringMap{"visionstack-project": pulumi.String(b.cfg.Name), "managed-by": pulumi.String("visionstack")}
}

// saMember is the IAM member string of a service account.
func saMember(sa *serviceaccount.Account) pulumi.StringInput {
	return pulumi.Sprintf("serviceAccount:%s", sa.Email)
}
