package stack

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/cloudrunv2"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/pubsub"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/vertex"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// iam: least privilege. Grants sit on the resource they concern wherever GCP allows;
// the project-level ones are the roles that have no narrower home.
func (b *builder) iam() error {
	pipe := saMember(b.pipelineSA)
	proj := pulumi.String(b.cfg.GCP.Project)
	type grant struct {
		name string
		make func(name string) error
	}
	bucket := func(bk *storage.Bucket, role string, member pulumi.StringInput) func(string) error {
		return func(name string) error {
			_, err := storage.NewBucketIAMMember(b.ctx, name, &storage.BucketIAMMemberArgs{Bucket: bk.Name, Role: pulumi.String(role), Member: member}, b.opts()...)
			return err
		}
	}
	topic := func(t *pubsub.Topic, role string, member pulumi.StringInput) func(string) error {
		return func(name string) error {
			_, err := pubsub.NewTopicIAMMember(b.ctx, name, &pubsub.TopicIAMMemberArgs{Project: proj, Topic: t.Name, Role: pulumi.String(role), Member: member}, b.opts()...)
			return err
		}
	}
	project := func(role string, member pulumi.StringInput, cond *projects.IAMMemberConditionArgs) func(string) error {
		return func(name string) error {
			args := &projects.IAMMemberArgs{Project: proj, Role: pulumi.String(role), Member: member}
			if cond != nil {
				args.Condition = cond
			}
			_, err := projects.NewIAMMember(b.ctx, name, args, b.opts()...)
			return err
		}
	}
	pubsubAgent := b.pubsubAgent
	n := b.cfg.Name
	db := fmt.Sprintf("projects/%s/databases/%s", b.cfg.GCP.Project, b.names.Database)
	grants := []grant{
		// The pipeline reads originals, writes outputs and quarantine, publishes tasks and events.
		{n + "-pipeline-reads-incoming", bucket(b.incoming, "roles/storage.objectViewer", pipe)},
		{n + "-pipeline-writes-incoming", bucket(b.incoming, "roles/storage.objectCreator", pipe)}, // sync API stores originals
		{n + "-pipeline-writes-processed", bucket(b.processed, "roles/storage.objectUser", pipe)},
		{n + "-pipeline-writes-quarantine", bucket(b.quarantine, "roles/storage.objectUser", pipe)},
		{n + "-pipeline-reads-models", bucket(b.models, "roles/storage.objectViewer", pipe)}, // onnx: files
		{n + "-pipeline-publishes-processed", topic(b.processedTopic, "roles/pubsub.publisher", pipe)},
		{n + "-pipeline-publishes-uploaded", topic(b.uploadedTopic, "roles/pubsub.publisher", pipe)},
		// No publisher on the dead-letter topic: on Cloud Run a permanent error is
		// acknowledged and quarantined; only Pub/Sub's agent dead-letters (and the local
		// queue, which is not Pub/Sub).
		// Firestore has no per-database IAM: a condition narrows the grant to this
		// database and its documents — exactly, so "D-meta" of another stack is not "D…".
		{n + "-pipeline-firestore", project("roles/datastore.user", pipe, &projects.IAMMemberConditionArgs{
			Title:      pulumi.String("only the " + b.names.Database + " database"),
			Expression: pulumi.String(fmt.Sprintf(`resource.name == "%s" || resource.name.startsWith("%s/")`, db, db)),
		})},
		// Predictions on this stack's endpoint only, and nothing but predictions:
		// roles/aiplatform.user would also let it deploy, undeploy and read every model.
		{n + "-pipeline-vertex", func(name string) error {
			role, err := projects.NewIAMCustomRole(b.ctx, n+"-predict", &projects.IAMCustomRoleArgs{Project: proj,
				RoleId: pulumi.String(PredictRoleID(n)), Title: pulumi.String("visionstack " + n + ": predict"),
				Description: pulumi.String("Online predictions on an endpoint, nothing else (visionstack)"),
				Permissions: pulumi.ToStringArray(PredictPermissions)}, b.opts()...)
			if err != nil {
				return err
			}
			_, err = vertex.NewAiEndpointIamMember(b.ctx, name, &vertex.AiEndpointIamMemberArgs{Project: proj,
				Location: pulumi.String(b.cfg.GCP.Region), Endpoint: b.vertexEndpoint.Name, Role: role.Name, Member: pipe}, b.opts()...)
			return err
		}},
		// Logs: none. The runtime writes them to stdout, which Cloud Run sends to
		// Cloud Logging itself (https://cloud.google.com/run/docs/logging).
		{n + "-pipeline-metrics", project("roles/monitoring.metricWriter", pipe, nil)},
		{n + "-pipeline-traces", project("roles/cloudtrace.agent", pipe, nil)},
		// The service's reconciler sweeps the dead letter and re-queues what can run.
		{n + "-pipeline-sweeps-dead-letter", func(name string) error {
			_, err := pubsub.NewSubscriptionIAMMember(b.ctx, name, &pubsub.SubscriptionIAMMemberArgs{Project: proj,
				Subscription: b.deadSub.Name, Role: pulumi.String("roles/pubsub.subscriber"), Member: pipe}, b.opts()...)
			return err
		}},
		// Pub/Sub acks dead-lettered messages as its service agent (the grants the push
		// subscription needs before it exists are in pushPrerequisites).
		{n + "-pubsub-agent-subscribes-push", func(name string) error {
			_, err := pubsub.NewSubscriptionIAMMember(b.ctx, name, &pubsub.SubscriptionIAMMemberArgs{Project: proj,
				Subscription: b.pushSub.Name, Role: pulumi.String("roles/pubsub.subscriber"), Member: pubsubAgent}, b.opts()...)
			return err
		}},
	}
	if b.cfg.Serving.Public {
		grants = append(grants, grant{n + "-public-runs-service", func(name string) error {
			_, err := b.runInvoker(name, pulumi.String("allUsers"))
			return err
		}})
	}
	for _, g := range grants {
		if err := g.make(g.name); err != nil {
			return fmt.Errorf("grant %s: %w", g.name, err)
		}
	}
	return nil
}

// PredictPermissions are all the pipeline may do on its Vertex AI endpoint.
var PredictPermissions = []string{"aiplatform.endpoints.predict"}

// PredictRoleID is the custom role's id: letters, digits, '_' and '.', 3–64 long.
func PredictRoleID(project string) string {
	return "visionstack_" + strings.ReplaceAll(project, "-", "_") + "_predict"
}

// runInvoker lets member call the Cloud Run service.
func (b *builder) runInvoker(name string, member pulumi.StringInput) (*cloudrunv2.ServiceIamMember, error) {
	return cloudrunv2.NewServiceIamMember(b.ctx, name, &cloudrunv2.ServiceIamMemberArgs{Project: pulumi.String(b.cfg.GCP.Project),
		Location: pulumi.String(b.cfg.GCP.Region), Name: b.run.Name, Role: pulumi.String("roles/run.invoker"), Member: member}, b.opts()...)
}

// pushPrerequisites makes the Pub/Sub service agent exist (ServiceIdentity: on a
// fresh project it may not yet, and a grant to it fails) and grants what the push
// subscription needs before it is created: the agent publishes dead letters and
// mints the invoker's OIDC tokens, and the invoker may call the service.
func (b *builder) pushPrerequisites() error {
	n := b.cfg.Name
	proj := pulumi.String(b.cfg.GCP.Project)
	agent, err := projects.NewServiceIdentity(b.ctx, n+"-pubsub-agent", &projects.ServiceIdentityArgs{
		Project: proj, Service: pulumi.String("pubsub.googleapis.com")}, b.opts()...)
	if err != nil {
		return err
	}
	b.pubsubAgent = agent.Member
	dl, err := pubsub.NewTopicIAMMember(b.ctx, n+"-pubsub-agent-publishes-dead-letter", &pubsub.TopicIAMMemberArgs{Project: proj,
		Topic: b.deadTopic.Name, Role: pulumi.String("roles/pubsub.publisher"), Member: agent.Member}, b.opts()...)
	if err != nil {
		return err
	}
	tokens, err := serviceaccount.NewIAMMember(b.ctx, n+"-pubsub-agent-mints-invoker-tokens", &serviceaccount.IAMMemberArgs{
		ServiceAccountId: b.invokerSA.Name, Role: pulumi.String("roles/iam.serviceAccountTokenCreator"), Member: agent.Member}, b.opts()...)
	if err != nil {
		return err
	}
	// Only the invoker account may call the service, unless the project asks for a public API.
	invoker, err := b.runInvoker(n+"-invoker-runs-service", saMember(b.invokerSA))
	if err != nil {
		return err
	}
	b.pushGrants = []pulumi.Resource{dl, tokens, invoker}
	return nil
}
