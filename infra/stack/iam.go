package stack

import (
	"fmt"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/cloudrunv2"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/organizations"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/pubsub"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
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
	proj0, err := organizations.LookupProject(b.ctx, &organizations.LookupProjectArgs{ProjectId: &b.cfg.GCP.Project})
	if err != nil {
		return fmt.Errorf("look up project %s: %w", b.cfg.GCP.Project, err)
	}
	pubsubAgent := pulumi.String(fmt.Sprintf("serviceAccount:service-%s@gcp-sa-pubsub.iam.gserviceaccount.com", proj0.Number))
	n := b.cfg.Name
	grants := []grant{
		// The pipeline reads originals, writes outputs and quarantine, publishes tasks and events.
		{n + "-pipeline-reads-incoming", bucket(b.incoming, "roles/storage.objectViewer", pipe)},
		{n + "-pipeline-writes-incoming", bucket(b.incoming, "roles/storage.objectCreator", pipe)}, // sync API stores originals
		{n + "-pipeline-writes-processed", bucket(b.processed, "roles/storage.objectAdmin", pipe)},
		{n + "-pipeline-writes-quarantine", bucket(b.quarantine, "roles/storage.objectAdmin", pipe)},
		{n + "-pipeline-publishes-processed", topic(b.processedTopic, "roles/pubsub.publisher", pipe)},
		{n + "-pipeline-publishes-uploaded", topic(b.uploadedTopic, "roles/pubsub.publisher", pipe)},
		{n + "-pipeline-publishes-dead-letter", topic(b.deadTopic, "roles/pubsub.publisher", pipe)}, // permanent errors go there at once
		// Firestore has no per-database IAM: a condition narrows the grant to this database.
		{n + "-pipeline-firestore", project("roles/datastore.user", pipe, &projects.IAMMemberConditionArgs{
			Title:      pulumi.String("only the " + b.names.Database + " database"),
			Expression: pulumi.Sprintf(`resource.name.startsWith("projects/%s/databases/%s")`, b.cfg.GCP.Project, b.names.Database),
		})},
		{n + "-pipeline-vertex", project("roles/aiplatform.user", pipe, nil)},
		{n + "-pipeline-metrics", project("roles/monitoring.metricWriter", pipe, nil)},
		{n + "-pipeline-logs", project("roles/logging.logWriter", pipe, nil)},
		{n + "-pipeline-traces", project("roles/cloudtrace.agent", pipe, nil)},
		// Pub/Sub moves dead letters as its service agent, and mints the push OIDC tokens.
		// The service's reconciler sweeps the dead letter and re-queues what can run.
		{n + "-pipeline-sweeps-dead-letter", func(name string) error {
			_, err := pubsub.NewSubscriptionIAMMember(b.ctx, name, &pubsub.SubscriptionIAMMemberArgs{Project: proj,
				Subscription: b.deadSub.Name, Role: pulumi.String("roles/pubsub.subscriber"), Member: pipe}, b.opts()...)
			return err
		}},
		{n + "-pubsub-agent-publishes-dead-letter", topic(b.deadTopic, "roles/pubsub.publisher", pubsubAgent)},
		{n + "-pubsub-agent-subscribes-push", func(name string) error {
			_, err := pubsub.NewSubscriptionIAMMember(b.ctx, name, &pubsub.SubscriptionIAMMemberArgs{Project: proj,
				Subscription: b.pushSub.Name, Role: pulumi.String("roles/pubsub.subscriber"), Member: pubsubAgent}, b.opts()...)
			return err
		}},
		{n + "-pubsub-agent-mints-invoker-tokens", func(name string) error {
			_, err := serviceaccount.NewIAMMember(b.ctx, name, &serviceaccount.IAMMemberArgs{ServiceAccountId: b.invokerSA.Name,
				Role: pulumi.String("roles/iam.serviceAccountTokenCreator"), Member: pubsubAgent}, b.opts()...)
			return err
		}},
		// Only the invoker account may call the service, unless the project asks for a public API.
		{n + "-invoker-runs-service", b.runInvoker(saMember(b.invokerSA))},
	}
	if b.cfg.Serving.Public {
		grants = append(grants, grant{n + "-public-runs-service", b.runInvoker(pulumi.String("allUsers"))})
	}
	for _, g := range grants {
		if err := g.make(g.name); err != nil {
			return fmt.Errorf("grant %s: %w", g.name, err)
		}
	}
	return nil
}

func (b *builder) runInvoker(member pulumi.StringInput) func(string) error {
	return func(name string) error {
		_, err := cloudrunv2.NewServiceIamMember(b.ctx, name, &cloudrunv2.ServiceIamMemberArgs{Project: pulumi.String(b.cfg.GCP.Project),
			Location: pulumi.String(b.cfg.GCP.Region), Name: b.run.Name, Role: pulumi.String("roles/run.invoker"), Member: member}, b.opts()...)
		return err
	}
}
