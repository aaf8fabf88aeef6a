// Package backfill runs images already stored through the pipeline again, for a new
// model version: it publishes one task per image to the work topic, so the push path
// (Cloud Run and Pub/Sub, or the local durable queue) does the work at the scale it
// always does. Each task's key is the image's key with the version
// (pipeline.VersionedKey), so an image is processed once per version however often
// its task is queued. Where it got to is kept in the metadata store after every few
// tasks: a run killed half-way resumes there. The scope is read a page at a time, so
// a run holds a page of it however large the bucket, and queues its first task after
// the first page.
package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
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
	// MaxBytes bounds what ContentKeys reads of an object (the project's
	// prepare.maxBytes): a larger one is skipped, said why, never read whole.
	MaxBytes int64
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
	// PageSize is how many objects or jobs are read at a time (default 500).
	PageSize int
	Now      func() time.Time
}

// contentKey hashes an object as it streams, at most MaxBytes of it: a larger one
// gets a reason to be skipped instead of a key.
func (o *Options) contentKey(ctx context.Context, name string) (key, why string, err error) {
	key, _, err = pipeline.ObjectContentKey(ctx, o.Incoming, name, o.MaxBytes)
	if errors.Is(err, pipeline.ErrTooLarge) {
		return "", fmt.Sprintf("larger than prepare.maxBytes (%d bytes)", o.MaxBytes), nil
	}
	return key, "", err
}

// Progress of a run.
type Progress struct {
	// Total is the images in scope: counted beside the run, 0 until the count
	// is done (a large bucket's first tasks are queued long before).
	Total     int
	Done      int // handled: by earlier runs (Resumed) and by this one
	Resumed   int // by earlier runs, as their cursor counted them
	Published int
	Skipped   int
	Rate      float64       // images handled a second by this run
	ETA       time.Duration // at that rate (0 when unknown)
}

// Skips are the images not queued for one reason: how many, and the first few.
type Skips struct {
	Why      string
	Count    int
	Examples []string
}

// skipExamples is how many images a Skips names: a run over a million images
// already processed must not keep a million names.
const skipExamples = 3

// Report of a run.
type Report struct {
	Progress
	Cursor  string  // the cursor's name in the metadata store
	Skipped []Skips // one per reason, in the order the reasons came up
}

func (r *Report) skip(item, why string) {
	r.Progress.Skipped++
	for i := range r.Skipped {
		if g := &r.Skipped[i]; g.Why == why {
			g.Count++
			if len(g.Examples) < skipExamples {
				g.Examples = append(g.Examples, item)
			}
			return
		}
	}
	r.Skipped = append(r.Skipped, Skips{Why: why, Count: 1, Examples: []string{item}})
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
	id  string // its place in the listing: object name, or the job's key
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
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	scope := "objects under " + quoteOrAll(o.Prefix)
	if o.FromVersion != "" {
		scope = "images processed by model version " + o.FromVersion
	}
	rep := Report{Cursor: CursorName(o)}
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
	rep.Resumed = cur.Published + cur.Skipped

	// The scope is counted beside the run, for the progress's total and ETA.
	var total atomic.Int64
	cctx, stopCount := context.WithCancel(ctx)
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		if n, err := o.count(cctx); err == nil {
			total.Store(int64(n))
		}
	}()
	defer func() { stopCount(); <-counted }()

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
		if n := int(total.Load()); n > 0 {
			p.Total = max(n, p.Done) // the scope can grow while the run goes
		}
		if final {
			p.Total = p.Done
		}
		if el := now.Sub(start).Seconds(); el > 0 && handled > 0 {
			p.Rate = float64(handled) / el
			if p.Total > 0 {
				p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
			}
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
	pg := o.pages(cur.After)
	for {
		items, err := pg.next(ctx)
		if err != nil {
			return rep, errors.Join(err, save(last))
		}
		if pg.done {
			break
		}
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				return rep, errors.Join(err, save(last))
			}
			why := it.why
			if why == "" && it.byContent {
				if it.key, why, err = o.contentKey(ctx, it.id); err != nil {
					return rep, errors.Join(fmt.Errorf("backfill: read %s: %w", it.id, err), save(last))
				}
			}
			if why == "" {
				why, err = o.already(ctx, it)
				if err != nil {
					return rep, errors.Join(err, save(last))
				}
			}
			if why != "" {
				rep.skip(it.id, why)
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
		// A page with nothing in scope (jobs of other versions) still moves the
		// cursor, so a resumed run does not read it again.
		last = pg.after
	}
	if last != "" {
		if err := save(last); err != nil {
			return rep, err
		}
	}
	rep.Total = rep.Resumed + handled
	report(true)
	rep.Progress.Done = rep.Resumed + handled
	return rep, nil
}

// count goes through the scope as Run does and returns how many images it holds.
func (o Options) count(ctx context.Context) (int, error) {
	n := 0
	for pg := o.pages(""); ; {
		items, err := pg.next(ctx)
		if err != nil || pg.done {
			return n, err
		}
		n += len(items)
	}
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

// pager reads the scope a page at a time from a listing position.
type pager struct {
	o     Options
	after string // the listing position the next page starts after
	done  bool   // the last page was read
	// seen: the images of the page before, for one that a page's first jobs carry
	// on (an image's own job and its versioned jobs sort next to each other).
	seen map[string]bool
}

func (o Options) pages(after string) *pager { return &pager{o: o, after: after} }

// next reads the page after p.after and returns its images in id order, moving
// p.after past it; at the end it sets p.done. A page of jobs can hold no image in
// scope.
func (p *pager) next(ctx context.Context) ([]item, error) {
	items, next, err := p.o.page(ctx, p.after)
	if err != nil {
		return nil, err
	}
	p.after, p.done = next, next == ""
	if p.o.FromVersion != "" { // one item an image
		now, kept := map[string]bool{}, items[:0]
		for _, it := range items {
			if !p.seen[it.key] && !now[it.key] {
				now[it.key] = true
				kept = append(kept, it)
			}
		}
		items, p.seen = kept, now
	}
	return items, nil
}

// page reads the page of the scope after the listing position after, and returns
// its images in id order (with --from-version, one for each of an image's jobs) and
// the position to go on from ("" at the end).
func (o Options) page(ctx context.Context, after string) ([]item, string, error) {
	var items []item
	if o.FromVersion != "" {
		jobs, err := o.Meta.List(ctx, meta.Filter{ByKey: true, After: after, Limit: o.PageSize})
		if err != nil {
			return nil, "", fmt.Errorf("backfill: list jobs: %w", err)
		}
		if len(jobs) == 0 {
			return nil, "", nil
		}
		for _, j := range jobs {
			if !j.State.Final() || !slices.ContainsFunc(j.Results, func(r meta.Result) bool { return r.ModelVersion == o.FromVersion }) {
				continue
			}
			base := pipeline.BaseKey(j.Key)
			it := item{id: j.Key, key: base, src: j.Source}
			if j.Source.Bucket != o.Incoming.Name() {
				it.why = "its original is not in the incoming bucket " + o.Incoming.Name()
			}
			items = append(items, it)
		}
		return items, jobs[len(jobs)-1].Key, nil
	}
	objs, err := o.Incoming.List(ctx, blob.Query{Prefix: o.Prefix, After: after, Limit: o.PageSize})
	if err != nil {
		return nil, "", fmt.Errorf("backfill: list %s: %w", o.Incoming.Name(), err)
	}
	if len(objs) == 0 {
		return nil, "", nil
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
	return items, objs[len(objs)-1].Name, nil
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
