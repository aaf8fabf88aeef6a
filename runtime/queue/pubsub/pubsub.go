// Package pubsub is a queue.Queue on Google Cloud Pub/Sub (the v2 client). Topics and
// subscriptions are the stack's; this package only publishes and receives. Retries
// and dead-lettering are the subscription's policies; a permanent handler error is
// sent to the subscription's dead-letter topic at once and acked.
package pubsub

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visionstack/visionstack/runtime/queue"
)

// Queue publishes to topics and receives from subscriptions of one project.
type Queue struct {
	client  *ps.Client
	project string
	log     *slog.Logger

	mu   sync.Mutex
	pubs map[string]*ps.Publisher
	dead map[string]string // subscription → dead-letter topic ("" when none)
}

var _ queue.Queue = (*Queue)(nil)

// New wraps a client; the caller closes the client after Close.
func New(client *ps.Client, project string, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.Default()
	}
	return &Queue{client: client, project: project, log: log, pubs: map[string]*ps.Publisher{}, dead: map[string]string{}}
}

func (q *Queue) publisher(topic string) *ps.Publisher {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pubs[topic]
	if !ok {
		p = q.client.Publisher(topic)
		q.pubs[topic] = p
	}
	return p
}

// Publish sends a message and waits for the server's ack.
func (q *Queue) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	id, err := q.publisher(topic).Publish(ctx, &ps.Message{Data: data, Attributes: attrs}).Get(ctx)
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", topic, err)
	}
	return id, nil
}

// Receive delivers a subscription's messages to h until ctx ends.
func (q *Queue) Receive(ctx context.Context, subscription string, h queue.Handler) error {
	err := q.client.Subscriber(subscription).Receive(ctx, func(ctx context.Context, m *ps.Message) {
		msg := &queue.Message{ID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: 1}
		if m.DeliveryAttempt != nil {
			msg.DeliveryAttempt = *m.DeliveryAttempt
		}
		log := msg.Logger(q.log)
		err := h(ctx, msg)
		switch {
		case err == nil:
			m.Ack()
		case queue.IsPermanent(err):
			q.deadLetter(ctx, log, subscription, m, msg, err)
		default:
			log.Info("delivery failed; Pub/Sub will redeliver", "subscription", subscription, "messageId", m.ID, "attempt", msg.DeliveryAttempt, "err", err)
			m.Nack()
		}
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("receive %s: %w", subscription, err)
	}
	return nil
}

var _ queue.Sweeper = (*Queue)(nil)

// SweepIdle ends a Sweep once no new message has arrived for this long.
var SweepIdle = 3 * time.Second

// Sweep pulls the subscription's messages with synchronous Pull calls until none new
// arrives for SweepIdle. Handled messages are acknowledged; kept ones stay leased
// until the end, so the sweep sees each once, and are then released with a
// ModifyAckDeadline(0) whose answer it waits for. (Releasing them with the streaming
// client's Nack at shutdown was lost now and then, and the next sweep found nothing
// until their ack deadline ran out.)
func (q *Queue) Sweep(ctx context.Context, subscription string, f func(context.Context, *queue.Message) bool) (int, error) {
	admin := q.client.SubscriptionAdminClient
	sub := subscription
	if !strings.HasPrefix(sub, "projects/") {
		sub = fmt.Sprintf("projects/%s/subscriptions/%s", q.project, subscription)
	}
	seen := map[string]bool{}
	var keep []string
	defer func() {
		if len(keep) == 0 {
			return
		}
		// Not ctx: release what was kept even when the caller gave up.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := admin.ModifyAckDeadline(rctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: keep}); err != nil {
			q.log.Warn("sweep: releasing kept messages failed; they return after their ack deadline", "subscription", sub, "err", err)
		}
	}()
	last := time.Now()
	for {
		wait := SweepIdle - time.Since(last)
		if wait <= 0 {
			return len(seen), nil
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		resp, err := admin.Pull(pctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 100})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return len(seen), ctx.Err()
			}
			if pctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
				continue // nothing within the idle time: the loop ends
			}
			return len(seen), fmt.Errorf("sweep %s: %w", subscription, err)
		}
		if len(resp.ReceivedMessages) == 0 {
			select { // an empty answer can come at once: do not spin
			case <-ctx.Done():
				return len(seen), ctx.Err()
			case <-time.After(min(100*time.Millisecond, wait)):
			}
			continue
		}
		var ack []string
		for _, rm := range resp.ReceivedMessages {
			m := rm.GetMessage()
			if seen[m.GetMessageId()] { // its lease ran out during the sweep
				keep = append(keep, rm.GetAckId())
				continue
			}
			seen[m.GetMessageId()] = true
			last = time.Now()
			msg := &queue.Message{ID: m.GetMessageId(), Data: m.GetData(), Attributes: m.GetAttributes(), DeliveryAttempt: max(int(rm.GetDeliveryAttempt()), 1)}
			if f(ctx, msg) {
				ack = append(ack, rm.GetAckId())
			} else {
				keep = append(keep, rm.GetAckId())
			}
		}
		if len(ack) > 0 {
			if err := admin.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ack}); err != nil {
				return len(seen), fmt.Errorf("sweep %s: acknowledge: %w", subscription, err)
			}
		}
	}
}

// deadLetter moves a message that can never succeed to the subscription's
// dead-letter topic now, rather than after every retry.
func (q *Queue) deadLetter(ctx context.Context, log *slog.Logger, subscription string, m *ps.Message, msg *queue.Message, cause error) {
	topic, err := q.deadLetterTopic(ctx, subscription)
	if err != nil || topic == "" {
		log.Error("permanent failure but no dead-letter topic known; nacking", "subscription", subscription, "messageId", m.ID, "err", cause, "lookupErr", err)
		m.Nack()
		return
	}
	if _, err := q.Publish(ctx, topic, m.Data, queue.DeadLetterAttributes(msg, cause, subscription)); err != nil {
		log.Error("dead-lettering failed; nacking", "messageId", m.ID, "err", err)
		m.Nack()
		return
	}
	log.Warn("dead-lettered", "subscription", subscription, "messageId", m.ID, "reason", cause)
	m.Ack()
}

func (q *Queue) deadLetterTopic(ctx context.Context, subscription string) (string, error) {
	q.mu.Lock()
	t, ok := q.dead[subscription]
	q.mu.Unlock()
	if ok {
		return t, nil
	}
	name := subscription
	if len(name) == 0 || name[0] != 'p' || len(splitName(name)) != 4 {
		name = "projects/" + q.project + "/subscriptions/" + subscription
	}
	sub, err := q.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil {
		return "", err
	}
	if dl := sub.GetDeadLetterPolicy(); dl != nil {
		t = dl.GetDeadLetterTopic()
	}
	q.mu.Lock()
	q.dead[subscription] = t
	q.mu.Unlock()
	return t, nil
}

func splitName(s string) []string {
	var parts []string
	start := 0
	for i := range len(s) {
		if s[i] == '/' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// Close flushes and stops the publishers.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range q.pubs {
		p.Stop()
	}
	q.pubs = map[string]*ps.Publisher{}
	return nil
}
