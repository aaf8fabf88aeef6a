package stack

import (
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/pubsub"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// topics: uploads arrive on `uploaded` (storage notifications and the sync API's
// tasks), results leave on `processed`, poison messages end on `dead-letter`.
func (b *builder) topics() error {
	mk := func(name string) (*pubsub.Topic, error) {
		return pubsub.NewTopic(b.ctx, name, &pubsub.TopicArgs{Project: pulumi.String(b.cfg.GCP.Project),
			Name: pulumi.String(name), Labels: b.labels()}, b.opts()...)
	}
	var err error
	if b.uploadedTopic, err = mk(b.names.UploadedTopic); err != nil {
		return err
	}
	if b.processedTopic, err = mk(b.names.ProcessedTopic); err != nil {
		return err
	}
	if b.deadTopic, err = mk(b.names.DeadLetterTopic); err != nil {
		return err
	}
	// Cloud Storage publishes as its service agent: it needs publisher on the topic
	// before the notification can be created.
	grant, err := pubsub.NewTopicIAMMember(b.ctx, b.names.UploadedTopic+"-gcs-publisher", &pubsub.TopicIAMMemberArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Topic: b.uploadedTopic.Name, Role: pulumi.String("roles/pubsub.publisher"),
		Member: pulumi.Sprintf("serviceAccount:%s", b.gcsAgent()),
	}, b.opts()...)
	if err != nil {
		return err
	}
	_, err = storage.NewNotification(b.ctx, b.names.IncomingBucket+"-finalize", &storage.NotificationArgs{
		Bucket: b.incoming.Name, Topic: b.uploadedTopic.ID(), PayloadFormat: pulumi.String("JSON_API_V1"),
		EventTypes: pulumi.StringArray{pulumi.String("OBJECT_FINALIZE")},
	}, b.opts(pulumi.DependsOn([]pulumi.Resource{grant}))...)
	return err
}

// PushAudience is the OIDC audience of a project's push tokens; the Cloud Run
// service lists it as a custom audience and the runtime checks it.
func PushAudience(name string) string { return "visionstack-" + name + "-push" }

// subscriptions: push to the service with OIDC as the invoker account, retries with
// backoff, dead-lettering after maxAttempts; a pull subscription keeps dead letters.
func (b *builder) subscriptions() error {
	d := b.cfg.Delivery
	var err error
	b.deadSub, err = pubsub.NewSubscription(b.ctx, b.names.DeadLetterSub, &pubsub.SubscriptionArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.DeadLetterSub), Topic: b.deadTopic.Name,
		MessageRetentionDuration: pulumi.String("604800s"), Labels: b.labels(),
		ExpirationPolicy: pubsub.SubscriptionExpirationPolicyArgs{Ttl: pulumi.String("")}, // never expires
	}, b.opts()...)
	if err != nil {
		return err
	}
	b.pushSub, err = pubsub.NewSubscription(b.ctx, b.names.PushSubscription, &pubsub.SubscriptionArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.PushSubscription), Topic: b.uploadedTopic.Name,
		AckDeadlineSeconds: pulumi.Int(int(d.AckDeadline.Seconds())),
		PushConfig: pubsub.SubscriptionPushConfigArgs{
			PushEndpoint: pulumi.Sprintf("%s/v1/pubsub/push", b.run.Uri),
			OidcToken: pubsub.SubscriptionPushConfigOidcTokenArgs{
				ServiceAccountEmail: b.invokerSA.Email, Audience: pulumi.String(PushAudience(b.cfg.Name)),
			},
		},
		RetryPolicy: pubsub.SubscriptionRetryPolicyArgs{
			MinimumBackoff: pulumi.Sprintf("%ds", int(d.MinBackoff.Seconds())),
			MaximumBackoff: pulumi.Sprintf("%ds", int(d.MaxBackoff.Seconds())),
		},
		DeadLetterPolicy: pubsub.SubscriptionDeadLetterPolicyArgs{
			DeadLetterTopic: b.deadTopic.ID(), MaxDeliveryAttempts: pulumi.Int(d.MaxAttempts),
		},
		ExpirationPolicy: pubsub.SubscriptionExpirationPolicyArgs{Ttl: pulumi.String("")},
		Labels:           b.labels(),
	}, b.opts(pulumi.DependsOn(b.pushGrants))...) // a push before its grants fails, and dead letters are lost
	return err
}
