// Package queue is the at-least-once message broker between the pipeline's steps and
// its consumers: Pub/Sub in the cloud, a SQLite-backed durable queue locally.
// Backends live in sibling packages (queue/local, queue/pubsub); queuetest is their
// shared conformance suite.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/visionstack/visionstack/runtime/fault"
)

// Message is one delivery. The same message may be delivered more than once.
type Message struct {
	ID         string
	Data       []byte
	Attributes map[string]string
	// DeliveryAttempt counts from 1.
	DeliveryAttempt int
}

// Handler processes one delivery. Returning nil acknowledges it; an error makes it
// come back later with backoff, until the backend's maximum attempts move it to the
// dead-letter topic. Wrap an error in Permanent to dead-letter it at once.
type Handler func(ctx context.Context, m *Message) error

// Publisher sends messages to a topic.
type Publisher interface {
	Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (id string, err error)
}

// Subscriber delivers a subscription's messages to h until ctx ends.
type Subscriber interface {
	Receive(ctx context.Context, subscription string, h Handler) error
}

// Queue is both ends.
type Queue interface {
	Publisher
	Subscriber
	Close() error
}

// Sweeper reads what a subscription holds without working on it: the reconciler's
// view of a dead-letter subscription.
type Sweeper interface {
	// Sweep hands each message the subscription holds now to f once; f returns true
	// to remove (acknowledge) it. Kept messages stay for a later sweep. It returns how
	// many messages it saw.
	Sweep(ctx context.Context, subscription string, f func(context.Context, *Message) bool) (int, error)
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("queue closed")

// Permanent marks a handler error that no retry can fix: the message goes to the
// dead-letter topic at once instead of being retried. It is fault.Permanent.
func Permanent(err error) error { return fault.Permanent(err) }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool { return fault.IsPermanent(err) }

// Logger is log naming the image a message is about, when it carries the
// pipeline's "key" attribute: every line a backend logs about it then says which.
func (m *Message) Logger(log *slog.Logger) *slog.Logger {
	if k := m.Attributes["key"]; k != "" {
		return log.With("key", k)
	}
	return log
}

// DeadLetterAttributes copies a message's attributes and adds why and from where it
// was dead-lettered, after how many attempts: what an operator needs to replay it.
func DeadLetterAttributes(m *Message, cause error, source string) map[string]string {
	attrs := make(map[string]string, len(m.Attributes)+3)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs["deadLetterReason"] = cause.Error()
	attrs["deadLetterSource"] = source
	attrs["deliveryAttempts"] = strconv.Itoa(m.DeliveryAttempt)
	return attrs
}
