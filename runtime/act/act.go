// Package act is the last step: store the processed image, announce it downstream,
// and record metadata and results — the record last, because the final state is what
// tells a redelivery that everything before it happened.
package act

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
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

// Metadata an output carries besides its job key: the source object and generation
// it was made from, so that a newer generation's output wins over an older one's.
const (
	SourceMetadata     = "visionstack-source"
	GenerationMetadata = "visionstack-generation"
)

// ErrStale: a newer generation of the source object already has its output.
var ErrStale = errors.New("a newer generation of the source already has its output")

// OutputName is where the processed image (a JPEG) of a source object goes: the same
// name when it already ends in .jpg or .jpeg, else the name with ".jpg" added, so
// a.png and a.jpg do not share a.jpg.
//
// A name that would pass Cloud Storage's 1024-byte limit (a source of 1021 bytes and
// more) is shortened to fit, with a digest of the whole name in it: the image is
// processed, not retried until it is dead-lettered.
func OutputName(object string) string {
	switch strings.ToLower(path.Ext(object)) {
	case ".jpg", ".jpeg":
		return fit(object, object)
	}
	return fit(object+".jpg", object)
}

// fit returns name when it is short enough, and otherwise its start, cut on a
// character boundary, with the digest of whole (what the name stands for) and the
// extension after it.
func fit(name, whole string) string {
	if len(name) <= blob.MaxNameBytes {
		return name
	}
	ext := path.Ext(name)
	digest := digestOf(whole)
	keep := blob.MaxNameBytes - len(ext) - 1 - len(digest)
	for keep > 0 && !utf8.RuneStart(name[keep]) {
		keep--
	}
	return name[:keep] + "." + digest + ext
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// keyedName is the fallback when another source object's output holds name: the
// name with the job key's digest in it, so no job overwrites another's output.
func keyedName(name, key string) string {
	ext := path.Ext(name)
	return fit(strings.TrimSuffix(name, ext)+"."+digestOf(key)+ext, name+"#"+key)
}

// Done stores the processed image, publishes, then records the job as done.
func (a *Actor) Done(ctx context.Context, c meta.Claim, job meta.Job, processed []byte) error {
	if a.store {
		out, err := a.put(ctx, a.Processed, OutputName(job.Source.Object), c.Key, job.Source, processed, "image/jpeg", nil)
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
		out, err := a.put(ctx, a.Quarantine, job.Source.Object, c.Key, job.Source, original, "application/octet-stream",
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
		ev := Event{Key: c.Key, State: job.State, Source: job.Source, Outputs: job.Outputs, Results: meta.WithoutShadows(job.Results), Reason: job.Reason}
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
// attempt of the same job wrote it, keep that. Another job's output under the name is
// replaced only when it was made from an older generation of the same source object
// (at the generation just read); a newer generation's output is never replaced
// (ErrStale); any other job's output keeps its name and this one takes a keyed name.
func (a *Actor) put(ctx context.Context, b blob.Bucket, name, key string, src meta.Source, data []byte, ctype string, md map[string]string) (meta.Output, error) {
	metadata := map[string]string{KeyMetadata: key, SourceMetadata: src.Bucket + "/" + src.Object,
		GenerationMetadata: strconv.FormatInt(src.Generation, 10)}
	for k, v := range md {
		metadata[k] = v
	}
	for try := 0; ; try++ {
		opts := blob.PutOptions{IfGenerationMatch: blob.DoesNotExist(), ContentType: ctype, Metadata: metadata}
		attrs, err := b.Put(ctx, name, data, opts)
		if errors.Is(err, blob.ErrPrecondition) {
			cur, aerr := b.Attrs(ctx, name)
			if aerr != nil {
				return meta.Output{}, fmt.Errorf("store %s/%s: %w", b.Name(), name, aerr)
			}
			curGen, _ := strconv.ParseInt(cur.Metadata[GenerationMetadata], 10, 64)
			switch {
			case cur.Metadata[KeyMetadata] == key:
				attrs, err = cur, nil // written by an earlier attempt of this job
			case try >= 2:
				return meta.Output{}, fmt.Errorf("store %s/%s: held by another job's output", b.Name(), name)
			case try > 0 || cur.Metadata[SourceMetadata] != metadata[SourceMetadata]:
				name = keyedName(name, key) // another object's output: keep it
				continue
			case curGen > src.Generation:
				return meta.Output{}, fault.Permanent(fmt.Errorf("store %s/%s: %w (generation %d, this is %d)", b.Name(), name, ErrStale, curGen, src.Generation))
			default: // an older generation's output of the same object: replace it
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
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
