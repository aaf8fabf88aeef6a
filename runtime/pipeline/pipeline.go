// Package pipeline wires the four steps — Prepare, Analyze, Transform, Act — into
// one job per image, on whatever backends it is given. It is where at-least-once
// delivery becomes exactly-once effect: a job is claimed before any work, outputs are
// written create-if-absent, and the final state is recorded last. Permanent errors
// (bad images) are recorded and the original quarantined; transient ones release the
// claim and return an error so the message is delivered again.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/visionstack/visionstack/runtime/act"
	"github.com/visionstack/visionstack/runtime/analyze"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/prepare"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
	"github.com/visionstack/visionstack/runtime/transform"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Deps are the backends a pipeline runs on.
type Deps struct {
	Incoming       blob.Bucket
	Processed      blob.Bucket
	Quarantine     blob.Bucket
	Meta           meta.Store
	Publisher      queue.Publisher
	ProcessedTopic string
	Models         map[string]model.Predictor // by config model reference
	Claimant       string                     // this worker's id (default host:pid)
	// Lease of a job's claim (default DefaultLease), renewed by a heartbeat every
	// third of it while the job runs: a dead worker's claim frees within one lease.
	Lease  time.Duration
	Logger *slog.Logger
	// Admit, when set, is asked before an image is decoded, with the pixels its header
	// declares; it returns a release func, or an error (wrapping ErrOverloaded) when
	// the process cannot take the image now.
	Admit func(ctx context.Context, pixels int64) (release func(), err error)
	// Telemetry records metrics and spans (nil: none).
	Telemetry *telemetry.Telemetry
}

// DefaultLease is a job claim's lease unless the project's delivery.lease says
// otherwise. Short, because nothing else frees the claim of a worker that died (kill
// -9, an instance gone): a redelivery waits at most this long; renewed while the job
// runs, so a long job keeps it.
const DefaultLease = config.DefaultLease

// busyPoll is how often a delivery that met a live claim looks again.
const busyPoll = 500 * time.Millisecond

// ErrOverloaded: too many pixels in flight; the caller retries later (HTTP 429).
var ErrOverloaded = errors.New("overloaded: too many pixels in flight")

// Task is the message that asks for one image to be processed. It names the image
// and nothing else: results the service already has (the sync API's) are recorded
// in the metadata store with meta.Store.Prime and come back with the claim, so no
// message can tell the pipeline what an image contains.
type Task struct {
	Key    string      `json:"key"`
	Source meta.Source `json:"source"`
}

// ObjectKey is the idempotency key of a stored object version.
func ObjectKey(bucket, object string, generation int64) string {
	return bucket + "/" + object + "#" + strconv.FormatInt(generation, 10)
}

const contentKeyPrefix = "sha256:"

// ContentKey is the idempotency key of image bytes (sync API, local runs).
func ContentKey(data []byte) string {
	sum := sha256.Sum256(data)
	return contentKeyPrefix + hex.EncodeToString(sum[:])
}

// ErrContentMismatch: the object under a content key holds other bytes.
var ErrContentMismatch = errors.New("content does not match its key")

// ErrTooLarge: ObjectContentKey found an object over its limit.
var ErrTooLarge = errors.New("larger than allowed")

// ObjectContentKey is ContentKey of object name of b, hashed as it streams, read
// only when it holds at most limit bytes (≤ 0: no limit) — a larger one is
// ErrTooLarge, not read into memory. attrs are the object's.
func ObjectContentKey(ctx context.Context, b blob.Bucket, name string, limit int64) (key string, attrs blob.Attrs, err error) {
	r, attrs, err := b.NewReader(ctx, name)
	if err != nil {
		return "", attrs, err
	}
	defer r.Close()
	if limit <= 0 {
		limit = math.MaxInt64 - 1
	}
	if attrs.Size > limit {
		return "", attrs, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, attrs.Size, limit)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, limit+1))
	if err != nil {
		return "", attrs, err
	}
	if n > limit { // grown since its attributes were read
		return "", attrs, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	return contentKeyPrefix + hex.EncodeToString(h.Sum(nil)), attrs, nil
}

var attemptSeq atomic.Uint64

// Publish queues a task on topic, carrying ctx's trace so the push path's work
// joins the trace of whoever queued it.
func Publish(ctx context.Context, pub queue.Publisher, topic string, t Task) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	attrs := map[string]string{"key": t.Key}
	telemetry.Inject(ctx, attrs)
	if _, err := pub.Publish(ctx, topic, data, attrs); err != nil {
		return fmt.Errorf("queue %s: %w", t.Key, err)
	}
	return nil
}

// ErrSuperseded: the object was overwritten after the task was queued; the newer
// generation has a task of its own.
var ErrSuperseded = errors.New("object superseded by a newer generation")

// Outcome of one Process call.
type Outcome struct {
	Job     meta.Job
	Skipped bool // already final: a duplicate delivery or a re-run
	Timings Timings
}

// Timings of the steps, for logs and benchmarks.
type Timings struct {
	Prepare, Analyze, Transform, Act time.Duration
}

// Pipeline processes images for one project.
type Pipeline struct {
	deps        Deps
	prep        *prepare.Preparer
	analyzer    *analyze.Analyzer
	transformer *transform.Transformer
	actor       *act.Actor
	log         *slog.Logger
	tel         *telemetry.Telemetry
	drift       []*drift.Tracker
	maxAttempts int
}

// New builds the pipeline of cfg (defaults applied, validated) on deps.
func New(cfg *config.Project, d Deps) (*Pipeline, error) {
	an, err := analyze.New(cfg.Pipeline, d.Models)
	if err != nil {
		return nil, err
	}
	if d.Claimant == "" {
		host, _ := os.Hostname()
		d.Claimant = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if d.Lease <= 0 {
		d.Lease = cfg.Delivery.Lease.Duration
	}
	if d.Lease <= 0 {
		d.Lease = DefaultLease
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	autoOrient := cfg.Pipeline.Prepare.AutoOrient == nil || *cfg.Pipeline.Prepare.AutoOrient
	tr := transform.New(cfg.Pipeline.Transforms, autoOrient)
	if tr.NeedsVerifier() {
		// A second opinion on every anonymized image, whatever model the analysis used.
		v, err := builtin.New(builtin.DefaultParams)
		if err != nil {
			return nil, err
		}
		tr.SetVerifier(v)
	}
	p := &Pipeline{
		deps:        d,
		prep:        prepare.New(cfg.Pipeline.Prepare),
		analyzer:    an,
		transformer: tr,
		actor:       act.New(cfg.Pipeline.Actions, d.Processed, d.Quarantine, d.Meta, d.Publisher, d.ProcessedTopic),
		log:         d.Logger,
		tel:         d.Telemetry,
		maxAttempts: cfg.Delivery.MaxAttempts,
	}
	an.Observe(func(ctx context.Context, s config.Analysis, took time.Duration, version string, err error) {
		kind := ""
		switch {
		case err == nil:
		case errors.Is(err, model.ErrConfig):
			kind = "config"
		case errors.Is(err, model.ErrTransient):
			kind = "transient"
		default:
			kind = "permanent"
		}
		p.tel.ModelCall(ctx, s.Name, s.Model, version, took, kind)
	})
	// The window starts from the store's recent history, so a restarted instance
	// warns as the running ones do.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, dc := range cfg.Monitoring.Drift.Each() {
		tr, err := drift.Open(ctx, d.Meta, dc, d.Logger, d.Telemetry.Drift)
		if err != nil {
			return nil, fmt.Errorf("drift monitor of %s: %w", dc.Analysis, err)
		}
		p.drift = append(p.drift, tr)
	}
	return p, nil
}

// Telemetry is what the pipeline records metrics and spans with (may be nil).
func (p *Pipeline) Telemetry() *telemetry.Telemetry {
	if p == nil {
		return nil
	}
	return p.tel
}

// Handle is the queue handler: it decodes a Task and processes it in the trace of
// whoever queued it. A malformed message can never succeed, so it is dead-lettered
// at once.
func (p *Pipeline) Handle(ctx context.Context, m *queue.Message) error {
	var t Task
	if err := json.Unmarshal(m.Data, &t); err != nil || t.Key == "" || t.Source.Object == "" {
		p.tel.Outcome(ctx, config.OutcomeDeadLettered)
		return queue.Permanent(fmt.Errorf("message %s is not a task: %v", m.ID, err))
	}
	_, err := p.Deliver(telemetry.Extract(ctx, m.Attributes), t, m.DeliveryAttempt)
	return err
}

// Deliver processes a task from delivery number attempt (0: unknown) and counts
// its outcome: ok, skipped, quarantined, or on error retried — dead_lettered when
// this was the last attempt the subscription allows.
func (p *Pipeline) Deliver(ctx context.Context, t Task, attempt int) (Outcome, error) {
	out, err := p.Process(context.WithValue(ctx, deliveryKey{}, true), t)
	outcome := config.OutcomeOK
	switch {
	case err != nil && attempt >= p.maxAttempts:
		outcome = config.OutcomeDeadLettered
	case err != nil:
		outcome = config.OutcomeRetried
	case out.Skipped:
		outcome = config.OutcomeSkipped
	case out.Job.State == meta.StateQuarantined:
		outcome = config.OutcomeQuarantined
	}
	p.tel.Outcome(ctx, outcome)
	return out, err
}

type deliveryKey struct{}

// IsDelivery reports whether ctx is a queue delivery's (Deliver): admission control
// waits longer for it, since turning it away spends one of its attempts.
func IsDelivery(ctx context.Context) bool {
	v, _ := ctx.Value(deliveryKey{}).(bool)
	return v
}

// step starts a step's span; its end records the step's duration and the span's
// status.
func (p *Pipeline) step(ctx context.Context, name string) (context.Context, func(error) time.Duration) {
	start := time.Now()
	ctx, span := p.tel.Tracer().Start(ctx, name)
	return ctx, func(err error) time.Duration {
		d := time.Since(start)
		p.tel.Step(ctx, name, d)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return d
	}
}

// Meta is the metadata store, for the synchronous API to prime its jobs.
func (p *Pipeline) Meta() meta.Store { return p.deps.Meta }

// Analyzer exposes the configured analyses, for the synchronous API.
func (p *Pipeline) Analyzer() *analyze.Analyzer { return p.analyzer }

// Preparer exposes the Prepare step, for the synchronous API.
func (p *Pipeline) Preparer() *prepare.Preparer { return p.prep }

// Process runs the four steps for one task, exactly once per key.
func (p *Pipeline) Process(ctx context.Context, t Task) (_ Outcome, err error) {
	ctx = telemetry.WithKey(ctx, t.Key)
	ctx, span := p.tel.Tracer().Start(ctx, "process", trace.WithAttributes(
		attribute.String("visionstack.key", t.Key), attribute.String("visionstack.object", t.Source.Object)))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	p.tel.Inflight(ctx, 1)
	defer p.tel.Inflight(ctx, -1)
	log := p.log.With("object", t.Source.Object)
	// Every attempt claims under its own name: two deliveries handled by workers of
	// the same process must still exclude each other.
	claimant := p.deps.Claimant + "/" + strconv.FormatUint(attemptSeq.Add(1), 10)
	claim, err := p.claim(ctx, t, claimant)
	switch {
	case errors.Is(err, meta.ErrDone):
		log.InfoContext(ctx, "already processed; skipping")
		job, gerr := p.deps.Meta.Get(ctx, t.Key)
		return Outcome{Job: job, Skipped: true}, gerr
	case err != nil:
		return Outcome{}, fmt.Errorf("process %s: %w", t.Key, err) // store down, or busy past our deadline: retry
	}
	ctx, stopBeat := p.heartbeat(ctx, log, claim)
	defer stopBeat()
	job := meta.Job{Key: t.Key, Source: t.Source}
	var out Outcome

	sctx, end := p.step(ctx, "prepare")
	data, img, release, err := p.prepare(sctx, t, &job)
	out.Timings.Prepare = end(err)
	if release != nil {
		defer release()
	}
	defer img.Close()
	if err != nil {
		return p.fail(ctx, log, claim, job, data, err, out)
	}
	job.Bytes = int64(len(data))
	job.Format, job.Width, job.Height = img.Header.Format, img.Width, img.Height
	p.tel.Read(ctx, job.Bytes, int64(img.Header.Width)*int64(img.Header.Height))

	sctx, end = p.step(ctx, "analyze")
	job.Results, err = p.analyzer.Remaining(sctx, img.Base64, img.MimeType, claim.Done)
	out.Timings.Analyze = end(err)
	if err != nil {
		return p.fail(ctx, log, claim, job, data, err, out)
	}
	for _, r := range job.Results {
		p.tel.Predictions(ctx, r)
	}

	_, end = p.step(ctx, "transform")
	processed, err := p.transformer.Apply(img.Decoded, job.Results)
	out.Timings.Transform = end(err)
	switch {
	case errors.Is(err, transform.ErrFaceRemained):
		p.tel.Recheck(ctx, config.RecheckQuarantined)
	case err == nil && processed.Verified && processed.Rechecked > 0:
		p.tel.Recheck(ctx, config.RecheckReanonymized)
		// Two different findings: a face the analysis missed, and one its anonymization
		// left recognisable (filled solid); the log says which.
		log.WarnContext(ctx, "the re-check anonymized faces the analysis missed or left recognisable",
			"faces", processed.Rechecked, "missed", processed.Rechecked-processed.Filled, "filledSolid", processed.Filled)
	case err == nil && processed.Verified:
		p.tel.Recheck(ctx, config.RecheckClean)
	}
	if err != nil {
		return p.fail(ctx, log, claim, job, data, err, out)
	}
	job.Rechecked = processed.Rechecked

	sctx, end = p.step(ctx, "act")
	err = p.actor.Done(sctx, claim, job, processed.Data)
	out.Timings.Act = end(err)
	if err != nil {
		return p.fail(ctx, log, claim, job, data, err, out)
	}
	out.Job, err = p.deps.Meta.Get(ctx, t.Key)
	if err == nil {
		for _, tr := range p.drift {
			tr.Observe(ctx, out.Job)
		}
	}
	log.InfoContext(ctx, "processed", "state", out.Job.State, "regions", processed.Regions,
		"prepareMs", ms(out.Timings.Prepare), "analyzeMs", ms(out.Timings.Analyze),
		"transformMs", ms(out.Timings.Transform), "actMs", ms(out.Timings.Act))
	return out, err
}

// claim claims t's job. A live claim of another worker is waited out, not answered
// with an error: the delivery would spend one of the subscription's attempts on a
// job that is running fine. The other worker either finishes (ErrDone: skip) or dies
// and its lease runs out (the claim is taken over); ctx bounds the wait.
func (p *Pipeline) claim(ctx context.Context, t Task, claimant string) (meta.Claim, error) {
	for {
		c, err := p.deps.Meta.Claim(ctx, t.Key, t.Source, claimant, p.deps.Lease)
		if !errors.Is(err, meta.ErrBusy) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, err
		case <-time.After(busyPoll):
		}
	}
}

// heartbeat renews c every third of the lease until stop is called. If the claim is
// lost (the store was unreachable past the lease and another worker took over), the
// returned context is cancelled: the job stops instead of writing beside the other.
func (p *Pipeline) heartbeat(ctx context.Context, log *slog.Logger, c meta.Claim) (context.Context, func()) {
	return meta.KeepAlive(ctx, p.deps.Lease/3, func(ctx context.Context) error {
		err := p.deps.Meta.Renew(ctx, c, p.deps.Lease)
		switch {
		case errors.Is(err, meta.ErrLostClaim):
			log.WarnContext(ctx, "claim lost to another worker; stopping this attempt", "err", err)
			return err
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "claim renewal failed; trying again", "err", err)
		}
		return nil
	})
}

// prepare loads the original, checks it against the queued generation and the
// limits, takes admission for its pixels and prepares the model input. release,
// when not nil, gives the admission back.
func (p *Pipeline) prepare(ctx context.Context, t Task, job *meta.Job) (data []byte, img *prepare.Image, release func(), err error) {
	data, attrs, err := p.prep.Load(ctx, p.deps.Incoming, t.Source.Object)
	if err != nil {
		return data, nil, nil, err
	}
	if attrs.Metadata[OriginMetadata] == OriginSync {
		job.Name = UploadName(attrs.Metadata[NameMetadata])
	}
	// A content key names bytes, not a generation: whatever the object's generation,
	// its bytes must hash to the key (the same bytes stored again after a crash are
	// still this job's; other bytes under that name are not, and are never processed
	// as if they had been analysed). An object key's newer generation is another job,
	// and this one is superseded.
	if strings.HasPrefix(t.Key, contentKeyPrefix) {
		if held := ContentKey(data); held != BaseKey(t.Key) {
			return nil, nil, nil, fault.Permanent(fmt.Errorf("%w: %s holds bytes of %s, not of its key", ErrContentMismatch, t.Source.Object, held))
		}
	} else if t.Source.Generation != 0 && attrs.Generation != t.Source.Generation {
		return nil, nil, nil, fault.Permanent(fmt.Errorf("%w: queued generation %d, found %d", ErrSuperseded, t.Source.Generation, attrs.Generation))
	}
	if p.deps.Admit != nil {
		h, err := p.prep.Limits().Check(data)
		if err != nil {
			return data, nil, nil, err
		}
		if release, err = p.deps.Admit(ctx, h.Cost()); err != nil {
			return data, nil, nil, err
		}
	}
	img, err = p.prep.Prepare(data, p.transformer.LongSide())
	return data, img, release, err
}

// fail quarantines on a permanent error and releases the claim on a transient one.
func (p *Pipeline) fail(ctx context.Context, log *slog.Logger, c meta.Claim, job meta.Job, original []byte, cause error, out Outcome) (Outcome, error) {
	bg := context.WithoutCancel(ctx)
	if fault.IsPermanent(cause) {
		log.WarnContext(ctx, "quarantined", "reason", cause.Error())
		if err := p.actor.Quarantined(bg, c, job, original, cause.Error()); err != nil {
			_ = p.deps.Meta.Release(bg, c)
			return out, fmt.Errorf("quarantine %s: %w", c.Key, err)
		}
		j, err := p.deps.Meta.Get(bg, c.Key)
		out.Job = j
		return out, err
	}
	if errors.Is(cause, model.ErrConfig) {
		// Not the image: every image fails the same way until someone fixes it.
		log.ErrorContext(ctx, "model configuration or access trouble; will retry: fix the endpoint, its deployment or the service account's roles", "err", cause.Error(), "attempt", c.Attempts)
	} else {
		log.WarnContext(ctx, "transient failure; will retry", "err", cause.Error(), "attempt", c.Attempts)
	}
	if err := p.deps.Meta.Release(bg, c); err != nil {
		log.ErrorContext(ctx, "release claim", "err", err)
	}
	return out, fmt.Errorf("process %s: %w", c.Key, cause)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
