// Package act is the last step: store the processed image, announce it downstream,
// and record metadata and results — the record last, because the final state is what
// tells a redelivery that everything before it happened.
package act

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/telemetry"
)

// KeyMetadata is the object metadata naming the job that wrote an output.
const KeyMetadata = "visionstack-key"

// Actor runs the step.
type Actor struct {
	Processed  blob.Bucket
	Quarantine blob.Bucket
	Meta       meta.Store
	Publisher  queue.Publisher
	Topic      string // full topic name for "processed" events
	store      bool
	record     bool
	publish    bool
}

// New builds an Actor for the configured actions; the dependencies are the backends.
func New(actions []config.Action, processed, quarantine blob.Bucket, store meta.Store, pub queue.Publisher, topic string) *Actor {
	a := &Actor{Processed: processed, Quarantine: quarantine, Meta: store, Publisher: pub, Topic: topic}
	for _, ac := range actions {
		a.store = a.store || ac.Store != nil
		a.record = a.record || ac.Record != nil
		a.publish = a.publish || ac.Publish != nil
	}
	return a
}

// Event is published on the processed topic.
type Event struct {
	Key     string        `json:"key"`
	State   meta.State    `json:"state"`
	Source  meta.Source   `json:"source"`
	Outputs []meta.Output `json:"outputs,omitempty"`
	Results []meta.Result `json:"results,omitempty"`
	Reason  string        `json:"reason,omitempty"`
}

// OutputName is where the processed image of a source object goes.
func OutputName(object string) string {
	return strings.TrimSuffix(object, path.Ext(object)) + ".jpg"
}

// Done stores the processed image, publishes, then records the job as done.
func (a *Actor) Done(ctx context.Context, c meta.Claim, job meta.Job, processed []byte) error {
	if a.store {
		out, err := a.put(ctx, a.Processed, OutputName(job.Source.Object), c.Key, processed, "image/jpeg", nil)
		if err != nil {
			return err
		}
		job.Outputs = append(job.Outputs, out)
	}
	job.State = meta.StateDone
	return a.finish(ctx, c, job)
}

// Quarantined copies the original aside and records why; the message is then acked.
func (a *Actor) Quarantined(ctx context.Context, c meta.Claim, job meta.Job, original []byte, reason string) error {
	job.State, job.Reason = meta.StateQuarantined, reason
	if a.Quarantine != nil && original != nil {
		out, err := a.put(ctx, a.Quarantine, job.Source.Object, c.Key, original, "application/octet-stream",
			map[string]string{"visionstack-reason": truncate(reason, 1024)})
		if err != nil {
			return err
		}
		job.Outputs = append(job.Outputs, out)
	}
	return a.finish(ctx, c, job)
}

func (a *Actor) finish(ctx context.Context, c meta.Claim, job meta.Job) error {
	if a.publish && a.Publisher != nil {
		ev := Event{Key: c.Key, State: job.State, Source: job.Source, Outputs: job.Outputs, Results: job.Results, Reason: job.Reason}
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		// At-least-once like every Pub/Sub publish: consumers dedupe on the key attribute.
		attrs := map[string]string{"key": c.Key, "state": string(job.State)}
		telemetry.Inject(ctx, attrs) // downstream consumers can continue the trace
		if _, err := a.Publisher.Publish(ctx, a.Topic, data, attrs); err != nil {
			return fmt.Errorf("publish %s: %w", c.Key, err)
		}
	}
	if !a.record {
		job.Results = nil
	}
	if err := a.Meta.Complete(ctx, c, job); err != nil {
		return fmt.Errorf("record %s: %w", c.Key, err)
	}
	return nil
}

// put writes an output exactly once per job key: create-if-absent; if an earlier
// attempt of the same job wrote it, keep that; if another job's output holds the
// name, replace it only at the generation just read.
func (a *Actor) put(ctx context.Context, b blob.Bucket, name, key string, data []byte, ctype string, md map[string]string) (meta.Output, error) {
	metadata := map[string]string{KeyMetadata: key}
	for k, v := range md {
		metadata[k] = v
	}
	opts := blob.PutOptions{IfGenerationMatch: blob.DoesNotExist(), ContentType: ctype, Metadata: metadata}
	attrs, err := b.Put(ctx, name, data, opts)
	if errors.Is(err, blob.ErrPrecondition) {
		cur, aerr := b.Attrs(ctx, name)
		if aerr != nil {
			return meta.Output{}, fmt.Errorf("store %s/%s: %w", b.Name(), name, aerr)
		}
		if cur.Metadata[KeyMetadata] == key {
			attrs, err = cur, nil // written by an earlier attempt of this job
		} else {
			gen := cur.Generation
			opts.IfGenerationMatch = &gen
			attrs, err = b.Put(ctx, name, data, opts)
		}
	}
	if err != nil {
		return meta.Output{}, fmt.Errorf("store %s/%s: %w", b.Name(), name, err)
	}
	return meta.Output{Bucket: b.Name(), Object: name, Generation: attrs.Generation, Bytes: attrs.Size}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
