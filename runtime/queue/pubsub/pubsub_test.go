package pubsub_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/runtime/queue/pubsub"
	"github.com/visionstack/visionstack/runtime/queue/queuetest"
)

const project = "visionstack-test"

// The queue conformance suite on the real Pub/Sub client against pstest, Google's
// in-process fake, with a dead-letter policy on each subscription as the stack sets it.
func TestConformance(t *testing.T) {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := ps.NewClient(context.Background(), project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	conformance(t, client, false)
}

// The same suite against Google's Pub/Sub emulator (Java, from google-cloud-cli).
func TestConformanceOnEmulator(t *testing.T) {
	e, err := emulator.PubSub(project)
	if emulator.Absent(err) && os.Getenv("CI") == "" {
		t.Skip("Pub/Sub emulator not installed (scripts/install-deps.sh):", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	t.Setenv("PUBSUB_EMULATOR_HOST", e.Host)
	client, err := ps.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	conformance(t, client, true)
}

func conformance(t *testing.T, client *ps.Client, deadLetterOnRedelivery bool) {
	pubsub.SweepIdle = time.Second
	ctx := context.Background()
	var n atomic.Int32
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		id := n.Add(1)
		topic := fmt.Sprintf("projects/%s/topics/jobs-%d", project, id)
		dead := topic + "-dead-letter"
		sub := fmt.Sprintf("projects/%s/subscriptions/jobs-%d", project, id)
		deadSub := sub + "-dead-letter"
		for _, name := range []string{topic, dead} {
			if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic,
			AckDeadlineSeconds: 10, DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dead, MaxDeliveryAttempts: 5}}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: deadSub, Topic: dead, AckDeadlineSeconds: 10}); err != nil {
			t.Fatal(err)
		}
		q := pubsub.New(client, project, nil)
		t.Cleanup(func() { q.Close() })
		return queuetest.Harness{Q: q, Topic: topic, Sub: sub, DeadSub: deadSub, MaxAttempts: 5, DeadLetterOnRedelivery: deadLetterOnRedelivery}
	})
}
