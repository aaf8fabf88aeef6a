// Package backfill runs images already stored through the pipeline again, for a new
// model version: it publishes one task per image to the work topic, so the push path
// (Cloud Run and Pub/Sub, or the local durable queue) does the work at the scale it
// always does. Each task's key is the image's key with the version
// (pipeline.VersionedKey), so an image is processed once per version however often
// its task is queued. Where it got to is kept in the metadata store after every few
// tasks: a run killed half-way resumes there.
package backfill

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/visionstack/visionstack/internal/wait"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
)

// Options say what to run again and where to queue it.
type Options struct {
	Meta      meta.Store
	Publisher queue.Publisher
	Topic     string      // the work topic
	Incoming  blob.Bucket // where the originals are
	// What: every object under Prefix (ObjectsMode), or the images whose jobs a model
	// of FromVersion produced (FromVersion set).
	Prefix      string
	FromVersion string
	// Version is the model version the images are processed for: part of each key.
	Version string
	// Rate bounds the tasks published a second (0: as fast as the queue takes them).
	Rate float64
	// ContentKeys keys objects by their content, as local runs key their jobs (the
	// local queue is the user's own): each object is read once to hash it.
	ContentKeys bool
	// Restart ignores a saved cursor and starts from the beginning (the keys still
	// make it idempotent).
	Restart bool
	DryRun  bool // count and report, publish nothing, save no cursor
	// Progress, when set, is called as the run goes (at most every ProgressEvery) and
	// once at its end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// SaveEvery bounds how often the cursor is written (default 200 ms): a run killed
	// between two saves publishes the images since the last one again, harmlessly.
	SaveEvery time.Duration
	Now       func() time.Time
}

// Progress of a run.
type Progress struct {
	Total     int // images in scope
	Done      int // handled: by earlier runs (Resumed) and by this one
	Resumed   int
	Published int
	Skipped   int
	Rate      float64       // images handled a second by this run
	ETA       time.Duration // at that rate (0 when unknown)
}

// Skip is an image not queued, and why.
type Skip struct{ Item, Why string }

// Report of a run.
type Report struct {
	Progress
	Cursor  string // the cursor's name in the metadata store
	Skipped []Skip
}

// cursor is what the metadata store keeps between runs.
type cursor struct {
	After     string    `json:"after"` // the last item handled, in item order
	Published int       `json:"published"`
	Skipped   int       `json:"skipped"`
	Version   string    `json:"version"`
	Scope     string    `json:"scope"`
	Updated   time.Time `json:"updated"`
}

// item is one image in scope; items are handled in id order.
type item struct {
	id  string // object name, or the image's key
	key string // the image's own job key
	src meta.Source
	why string // not empty: skipped for this reason
	// byContent: key is the content's hash (ContentKeys), computed when the item is
	// handled, so a resumed run does not read what it passes over.
	byContent bool
}

// ErrNoVersion: the version is missing or not a valid label.
var ErrNoVersion = errors.New("backfill needs the model version the images are processed for")

// Run queues the images in scope that the version has not processed yet.
func Run(ctx context.Context, o Options) (Report, error) {
	if err := pipeline.ValidateVersion(o.Version); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrNoVersion, err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = 200 * time.Millisecond
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 250 * time.Millisecond
	}
	scope := "objects under " + quoteOrAll(o.Prefix)
	if o.FromVersion != "" {
		scope = "images processed by model version " + o.FromVersion
	}
	rep := Report{Cursor: CursorName(o)}
	items, err := o.items(ctx)
	if err != nil {
		return rep, err
	}
	rep.Total = len(items)

	var cur cursor
	if !o.Restart {
		raw, err := o.Meta.Cursor(ctx, rep.Cursor)
		switch {
		case errors.Is(err, meta.ErrNotFound):
		case err != nil:
			return rep, fmt.Errorf("backfill: read cursor: %w", err)
		default:
			if err := json.Unmarshal(raw, &cur); err != nil {
				return rep, fmt.Errorf("backfill: cursor %s is not ours (%w); start again with --restart", rep.Cursor, err)
			}
		}
	}
	start := o.Now()
	lastSave, lastProgress := start, time.Time{}
	handled := 0 // by this run
	report := func(final bool) {
		now := o.Now()
		if o.Progress == nil || (!final && now.Sub(lastProgress) < o.ProgressEvery) {
			return
		}
		lastProgress = now
		p := rep.Progress
		p.Done = p.Resumed + handled
		if el := now.Sub(start).Seconds(); el > 0 && handled > 0 {
			p.Rate = float64(handled) / el
			p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
		}
		o.Progress(p)
	}
	save := func(after string) error {
		if o.DryRun {
			return nil
		}
		cur.After, cur.Version, cur.Scope, cur.Updated = after, o.Version, scope, o.Now().UTC()
		raw, _ := json.Marshal(cur)
		// Saved even when ctx has ended (Ctrl-C): that is when it matters most.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := o.Meta.SaveCursor(sctx, rep.Cursor, raw); err != nil {
			return fmt.Errorf("backfill: save cursor: %w", err)
		}
		lastSave = o.Now()
		return nil
	}

	last := cur.After // a run that stops before handling anything new keeps it
	for _, it := range items {
		if cur.After != "" && it.id <= cur.After {
			rep.Resumed++
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, errors.Join(err, save(last))
		}
		why := it.why
		if why == "" && it.byContent {
			data, _, err := blob.ReadAll(ctx, o.Incoming, it.id, 0)
			if err != nil {
				return rep, errors.Join(fmt.Errorf("backfill: read %s: %w", it.id, err), save(last))
			}
			it.key = pipeline.ContentKey(data)
		}
		if why == "" {
			why, err = o.already(ctx, it)
			if err != nil {
				return rep, errors.Join(err, save(last))
			}
		}
		if why != "" {
			rep.Skipped = append(rep.Skipped, Skip{Item: it.id, Why: why})
			rep.Progress.Skipped++
			cur.Skipped++
		} else {
			if o.Rate > 0 {
				// Paced from the run's start: a slow publish is made up for, a burst is not.
				due := start.Add(time.Duration(float64(rep.Published) / o.Rate * float64(time.Second)))
				if err := wait.For(ctx, due.Sub(o.Now())); err != nil {
					return rep, errors.Join(err, save(last))
				}
			}
			if !o.DryRun {
				t := pipeline.Task{Key: pipeline.VersionedKey(it.key, o.Version), Source: it.src}
				if err := pipeline.Publish(ctx, o.Publisher, o.Topic, t); err != nil {
					return rep, errors.Join(fmt.Errorf("backfill %s: %w", it.id, err), save(last))
				}
			}
			rep.Published++
			cur.Published++
		}
		handled++
		last = it.id
		// The task is queued before the cursor passes it: a crash in between queues it
		// once more (processed once all the same), never loses it.
		if o.Now().Sub(lastSave) >= o.SaveEvery {
			if err := save(last); err != nil {
				return rep, err
			}
		}
		report(false)
	}
	if last != "" {
		if err := save(last); err != nil {
			return rep, err
		}
	}
	report(true)
	rep.Progress.Done = rep.Resumed + handled
	return rep, nil
}

// already says why the version needs not process an image (empty: it does): its
// versioned job is final, or its own job's results are already that version's.
func (o Options) already(ctx context.Context, it item) (string, error) {
	for _, key := range []string{pipeline.VersionedKey(it.key, o.Version), it.key} {
		j, err := o.Meta.Get(ctx, key)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("backfill %s: %w", it.id, err)
		}
		if key != it.key && j.State.Final() {
			return "already processed for version " + o.Version + " (" + string(j.State) + ")", nil
		}
		if key == it.key && j.State.Final() && slices.ContainsFunc(j.Results, func(r meta.Result) bool { return r.ModelVersion == o.Version }) {
			return "already processed by version " + o.Version, nil
		}
	}
	return "", nil
}

// items lists the scope in id order.
func (o Options) items(ctx context.Context) ([]item, error) {
	var items []item
	if o.FromVersion != "" {
		jobs, err := o.Meta.List(ctx, meta.Filter{})
		if err != nil {
			return nil, fmt.Errorf("backfill: list jobs: %w", err)
		}
		seen := map[string]bool{}
		for _, j := range jobs {
			base := pipeline.BaseKey(j.Key)
			if seen[base] || !j.State.Final() || !slices.ContainsFunc(j.Results, func(r meta.Result) bool { return r.ModelVersion == o.FromVersion }) {
				continue
			}
			seen[base] = true
			it := item{id: base, key: base, src: j.Source}
			if j.Source.Bucket != o.Incoming.Name() {
				it.why = "its original is not in the incoming bucket " + o.Incoming.Name()
			}
			items = append(items, it)
		}
	} else {
		objs, err := o.Incoming.List(ctx, o.Prefix)
		if err != nil {
			return nil, fmt.Errorf("backfill: list %s: %w", o.Incoming.Name(), err)
		}
		for _, a := range objs {
			it := item{id: a.Name, src: meta.Source{Bucket: o.Incoming.Name(), Object: a.Name, Generation: a.Generation}}
			it.key = pipeline.ObjectKey(it.src.Bucket, it.src.Object, it.src.Generation)
			it.byContent = o.ContentKeys
			switch {
			case strings.HasSuffix(a.Name, "/"):
				it.why = "folder placeholder"
			case blob.ValidateName(a.Name) != nil:
				it.why = blob.ValidateName(a.Name).Error()
			case a.Metadata[pipeline.OriginMetadata] == pipeline.OriginSync:
				// Stored by the sync API under its content hash: its job is keyed by content.
				if k, ok := pipeline.SyncKey(a.Name); ok {
					it.key, it.byContent = k, false
				} else {
					it.why = "a sync API original whose name is not its content hash"
				}
			}
			items = append(items, it)
		}
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.id, b.id) })
	return items, nil
}

// CursorName is where a run's cursor is kept: one per scope and version, so another
// backfill never resumes from it.
func CursorName(o Options) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{o.Incoming.Name(), o.Topic, o.Prefix, o.FromVersion, o.Version}, "\x00")))
	return "backfill-" + hex.EncodeToString(sum[:12])
}

func quoteOrAll(prefix string) string {
	if prefix == "" {
		return "the bucket's root"
	}
	return fmt.Sprintf("%q", prefix)
}
