// Package reconcile finds work that delivery alone will not finish and puts it back
// on the queue: jobs left in "processing" long after their lease ran out (a worker
// died and its message was dead-lettered, or a sync job's task was never queued), and
// messages in the dead-letter subscription. What cannot run is reported, not dropped.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
)

// RequeuesAttribute counts how often the reconciler re-queued a message; past
// Options.MaxRequeues it stays in the dead letter and is reported.
const RequeuesAttribute = "visionstack-requeues"

// Defaults.
const (
	DefaultStaleAfter  = 15 * time.Minute // past Pub/Sub's 10-minute maximum backoff
	DefaultMaxRequeues = 3
)

// Options say where to look and what to do.
type Options struct {
	Meta      meta.Store
	Publisher queue.Publisher
	WorkTopic string // where re-queued tasks go
	Incoming  string // the incoming bucket's name (a task must name a source in it)
	// DeadLetters and DeadLetterSub: the dead-letter subscription (nil: not swept).
	DeadLetters   queue.Sweeper
	DeadLetterSub string
	// StaleAfter: a processing job whose claim expired and that nothing touched for
	// this long is stuck (default DefaultStaleAfter).
	StaleAfter time.Duration
	// MaxRequeues bounds re-queues of one message (default DefaultMaxRequeues).
	MaxRequeues int
	// MaxAttempts is the subscription's delivery attempts per message; a stuck job
	// with MaxAttempts × (MaxRequeues+1) attempts behind it is reported, not re-queued.
	MaxAttempts int
	// Trusted: the queue is this user's own (local mode), whose tasks are keyed by
	// content under any object name; otherwise a task must pass pipeline.CheckTask.
	Trusted bool
	DryRun  bool // report what would be done, change nothing
	Logger  *slog.Logger
	Now     func() time.Time
}

// Action is what the reconciler did with one item.
type Action string

// Actions.
const (
	Requeued Action = "requeued" // back on the work topic
	Removed  Action = "removed"  // nothing left to do (the job is final): acked
	Reported Action = "reported" // cannot run as is: left where it is for a person
)

// Item is one stuck job or dead letter and what was done with it.
type Item struct {
	Kind   string // "stuck job" or "dead letter"
	Key    string
	Object string
	Action Action
	Why    string
}

// Report lists every item, in the order found.
type Report struct {
	Items []Item
}

// Count returns how many items got action a.
func (r Report) Count(a Action) int {
	n := 0
	for _, it := range r.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

func (o *Options) defaults() {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.MaxRequeues <= 0 {
		o.MaxRequeues = DefaultMaxRequeues
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Run makes one pass: stuck jobs first, then the dead letter.
func Run(ctx context.Context, o Options) (Report, error) {
	o.defaults()
	var r Report
	if err := o.stuckJobs(ctx, &r); err != nil {
		return r, err
	}
	if o.DeadLetters != nil && o.DeadLetterSub != "" {
		if err := o.deadLetters(ctx, &r); err != nil {
			return r, err
		}
	}
	for _, it := range r.Items {
		lvl := slog.LevelInfo
		if it.Action == Reported {
			lvl = slog.LevelWarn
		}
		o.Logger.Log(ctx, lvl, "reconcile: "+it.Kind+" "+string(it.Action), "key", it.Key, "object", it.Object, "why", it.Why, "dryRun", o.DryRun)
	}
	return r, nil
}

// stuckJobs re-queues processing jobs whose claim ran out long ago.
func (o *Options) stuckJobs(ctx context.Context, r *Report) error {
	// Newest first: the order the stack's Firestore index (state, updated desc) serves;
	// an oldest-first query on a state would need another index.
	jobs, err := o.Meta.List(ctx, meta.Filter{State: meta.StateProcessing})
	if err != nil {
		return fmt.Errorf("reconcile: list processing jobs: %w", err)
	}
	now := o.Now()
	giveUp := o.MaxAttempts * (o.MaxRequeues + 1)
	for _, j := range jobs {
		if j.ClaimedTo.After(now) || now.Sub(j.Updated) < o.StaleAfter {
			continue // running, or still within the subscription's retries
		}
		it := Item{Kind: "stuck job", Key: j.Key, Object: j.Source.Object}
		since := fmt.Sprintf("processing since %s, last touched %s ago, %d attempts", j.Created.Format(time.RFC3339), now.Sub(j.Updated).Round(time.Second), j.Attempts)
		switch {
		case j.Attempts >= giveUp:
			it.Action, it.Why = Reported, since+": given up; look at the logs for this key, then re-queue with `visionstack reconcile --stale-after 0` after fixing the cause"
		default:
			t := pipeline.Task{Key: j.Key, Source: j.Source}
			if err := o.check(t); err != nil {
				it.Action, it.Why = Reported, since+": "+err.Error()
				break
			}
			// Marked first, on the update time read: another instance's reconciler
			// (or this one's next pass) finds it touched and leaves it for StaleAfter;
			// without the mark every pass on every instance queued it again.
			if !o.DryRun {
				if err := o.Meta.Requeued(ctx, j.Key, j.Updated, now); errors.Is(err, meta.ErrChanged) {
					continue // re-queued by another instance, or claimed since it was read
				} else if err != nil {
					return fmt.Errorf("reconcile: mark %s re-queued: %w", j.Key, err)
				}
			}
			it.Action, it.Why = Requeued, since
			if err := o.publishTask(ctx, t); err != nil {
				return err
			}
		}
		r.Items = append(r.Items, it)
	}
	return nil
}

func (o *Options) publishTask(ctx context.Context, t pipeline.Task) error {
	if o.DryRun {
		return nil
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := o.Publisher.Publish(ctx, o.WorkTopic, data, map[string]string{"key": t.Key}); err != nil {
		return fmt.Errorf("reconcile: re-queue %s: %w", t.Key, err)
	}
	return nil
}

// deadLetters re-queues dead letters whose job can still run, removes those whose
// job is final, and keeps (reports) the rest.
func (o *Options) deadLetters(ctx context.Context, r *Report) error {
	var failed error
	_, err := o.DeadLetters.Sweep(ctx, o.DeadLetterSub, func(ctx context.Context, m *queue.Message) bool {
		it, remove, err := o.deadLetter(ctx, m)
		if err != nil {
			failed = err
			return false
		}
		r.Items = append(r.Items, it)
		return remove && !o.DryRun
	})
	if err != nil {
		return fmt.Errorf("reconcile: sweep %s: %w", o.DeadLetterSub, err)
	}
	return failed
}

func (o *Options) deadLetter(ctx context.Context, m *queue.Message) (Item, bool, error) {
	it := Item{Kind: "dead letter", Key: m.Attributes["key"]}
	reason := m.Attributes["deadLetterReason"]
	if reason == "" {
		reason = "no reason recorded"
	}
	decode := pipeline.TaskFrom // checks a task names its source
	if o.Trusted {
		decode = pipeline.DecodeTask
	}
	t, skip, err := decode(m.Data, m.Attributes, o.Incoming)
	switch {
	case err != nil:
		it.Action, it.Why = Reported, "not a task this service wrote: "+err.Error()
		return it, false, nil
	case skip != "":
		it.Action, it.Why = Removed, "needs no work: "+skip
		return it, true, nil
	}
	it.Key, it.Object = t.Key, t.Source.Object
	j, err := o.Meta.Get(ctx, t.Key)
	switch {
	case err == nil && j.State.Final():
		it.Action, it.Why = Removed, "already "+string(j.State)
		return it, true, nil
	case err != nil && !errors.Is(err, meta.ErrNotFound):
		return it, false, fmt.Errorf("reconcile: look up %s: %w", t.Key, err)
	}
	n, _ := strconv.Atoi(m.Attributes[RequeuesAttribute])
	if n >= o.MaxRequeues {
		it.Action, it.Why = Reported, fmt.Sprintf("re-queued %d times already; last failure: %s", n, reason)
		return it, false, nil
	}
	if !o.DryRun {
		attrs := maps.Clone(m.Attributes)
		for k := range attrs {
			if strings.HasPrefix(k, "deadLetter") || k == "deliveryAttempts" {
				delete(attrs, k)
			}
		}
		attrs[RequeuesAttribute] = strconv.Itoa(n + 1)
		if _, err := o.Publisher.Publish(ctx, o.WorkTopic, m.Data, attrs); err != nil {
			return it, false, fmt.Errorf("reconcile: re-queue %s: %w", t.Key, err)
		}
	}
	it.Action, it.Why = Requeued, "dead-lettered: "+reason
	return it, true, nil
}

func (o *Options) check(t pipeline.Task) error {
	if o.Trusted {
		return nil
	}
	return pipeline.CheckTask(t, o.Incoming)
}
