// Package pubsub is a queue.Queue on Google Cloud Pub/Sub (the v2 client). Topics and
// subscriptions are the stack's; this package only publishes and receives. Retries
// and dead-lettering are the subscription's policies; a permanent handler error is
// sent to the subscription's dead-letter topic at once and acked.
package pubsub

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

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

// sweepFlush is how long a Sweep keeps pulling after its nacks, so they are sent.
const sweepFlush = 300 * time.Millisecond

// Sweep pulls the subscription's messages until none new arrives for SweepIdle.
// A kept message is held, its lease extended by the client, until no new message
// comes, then nacked while the pull still runs (a nack sent during shutdown can be
// lost, and the message would wait out its ack deadline), so the sweep sees each
// message once. More than MaxOutstandingMessages kept at once stall the pull: the
// rest wait for the next sweep.
func (q *Queue) Sweep(ctx context.Context, subscription string, f func(context.Context, *queue.Message) bool) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		seen    = map[string]bool{}
		release = make(chan struct{})
		held    sync.WaitGroup
	)
	idle := time.AfterFunc(SweepIdle, func() {
		close(release)
		held.Wait()
		time.Sleep(sweepFlush) // let the client send the nacks
		cancel()
	})
	defer idle.Stop()
	err := q.client.Subscriber(subscription).Receive(ctx, func(rctx context.Context, m *ps.Message) {
		mu.Lock()
		again := seen[m.ID]
		seen[m.ID] = true
		if !again {
			select {
			case <-release:
			default:
				idle.Reset(SweepIdle)
			}
		}
		held.Add(1)
		mu.Unlock()
		defer held.Done()
		if again {
			<-release
			m.Nack()
			return
		}
		msg := &queue.Message{ID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: 1}
		if m.DeliveryAttempt != nil {
			msg.DeliveryAttempt = *m.DeliveryAttempt
		}
		if f(rctx, msg) {
			m.Ack()
			return
		}
		<-release
		m.Nack()
	})
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if err != nil && ctx.Err() == nil {
		return n, fmt.Errorf("sweep %s: %w", subscription, err)
	}
	return n, nil
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
