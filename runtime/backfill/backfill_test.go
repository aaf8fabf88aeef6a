package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/backfill"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// recorder is a publisher that keeps the tasks and fails from the failAfter-th on.
type recorder struct {
	mu        sync.Mutex
	tasks     []pipeline.Task
	failAfter int // 0: never
}

func (r *recorder) Publish(_ context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAfter > 0 && len(r.tasks) >= r.failAfter {
		return "", errors.New("publish: connection reset")
	}
	var t pipeline.Task
	if err := json.Unmarshal(data, &t); err != nil || attrs["key"] != t.Key || topic != "work" {
		return "", fmt.Errorf("bad publish %s %q %v", topic, data, attrs)
	}
	r.tasks = append(r.tasks, t)
	return fmt.Sprint(len(r.tasks)), nil
}

type fixture struct {
	store *sqlite.Store
	in    *local.Bucket
	pub   *recorder
}

func newFixture(t *testing.T, objects int) *fixture {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	in, err := local.Open(filepath.Join(dir, "incoming"), "incoming")
	if err != nil {
		t.Fatal(err)
	}
	for i := range objects {
		if _, err := in.Put(context.Background(), fmt.Sprintf("cam/%03d.jpg", i), []byte{0xff, 0xd8, byte(i)}, blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{store: s, in: in, pub: &recorder{}}
}

func (f *fixture) options() backfill.Options {
	return backfill.Options{Meta: f.store, Publisher: f.pub, Topic: "work", Incoming: f.in, Prefix: "cam/", Version: "v2", SaveEvery: time.Nanosecond}
}

// finish records a final job under key.
func (f *fixture) finish(t *testing.T, key string, src meta.Source, results ...meta.Result) {
	t.Helper()
	ctx := context.Background()
	c, err := f.store.Claim(ctx, key, src, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Complete(ctx, c, meta.Job{Key: key, Source: src, State: meta.StateDone, Results: results}); err != nil {
		t.Fatal(err)
	}
}

func TestQueuesEveryObjectOnceWithVersionedKeys(t *testing.T) {
	f := newFixture(t, 20)
	ctx := context.Background()
	var last backfill.Progress
	o := f.options()
	o.Progress = func(p backfill.Progress) { last = p }
	rep, err := backfill.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 20 || rep.Published != 20 || len(f.pub.tasks) != 20 || len(rep.Skipped) != 0 {
		t.Fatalf("report %+v, %d tasks; want 20 queued", rep, len(f.pub.tasks))
	}
	if last.Done != 20 || last.Total != 20 {
		t.Errorf("last progress %+v, want 20 of 20", last)
	}
	for i, tk := range f.pub.tasks {
		want := pipeline.ObjectKey("incoming", fmt.Sprintf("cam/%03d.jpg", i), tk.Source.Generation) + pipeline.VersionSeparator + "v2"
		if tk.Key != want || pipeline.CheckTask(tk, "incoming") != nil {
			t.Errorf("task %d key %q, want %q (and a task the service accepts)", i, tk.Key, want)
		}
	}
	// Again: the cursor says it is all done.
	rep, err = backfill.Run(ctx, o)
	if err != nil || rep.Resumed != 20 || rep.Published != 0 || len(f.pub.tasks) != 20 {
		t.Fatalf("second run: %+v, %v, %d tasks; want all resumed, none queued", rep, err, len(f.pub.tasks))
	}
	// With --restart it looks at each again (and queues again: the keys dedupe the work).
	o.Restart = true
	rep, err = backfill.Run(ctx, o)
	if err != nil || rep.Published != 20 {
		t.Fatalf("restart: %+v, %v", rep, err)
	}
}

// A run that fails half-way resumes after the last image it queued: nothing is
// lost, and at most the image in flight is queued twice.
func TestResumesAfterFailure(t *testing.T) {
	f := newFixture(t, 30)
	ctx := context.Background()
	f.pub.failAfter = 12
	rep, err := backfill.Run(ctx, f.options())
	if err == nil || rep.Published != 12 {
		t.Fatalf("first run: %+v, %v; want an error after 12", rep, err)
	}
	f.pub.failAfter = 0
	rep, err = backfill.Run(ctx, f.options())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resumed != 12 || rep.Published != 18 {
		t.Errorf("second run %+v, want 12 resumed and 18 queued", rep)
	}
	seen := map[string]int{}
	for _, tk := range f.pub.tasks {
		seen[tk.Key]++
	}
	if len(seen) != 30 || len(f.pub.tasks) != 30 {
		t.Errorf("%d tasks for %d images, want 30 for 30", len(f.pub.tasks), len(seen))
	}
}

func TestSkipsWhatTheVersionProcessedAndSaysWhy(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	objs, err := f.in.List(ctx, blob.Query{Prefix: "cam/"})
	if err != nil {
		t.Fatal(err)
	}
	src := func(i int) meta.Source {
		return meta.Source{Bucket: "incoming", Object: objs[i].Name, Generation: objs[i].Generation}
	}
	key := func(i int) string { return pipeline.ObjectKey("incoming", objs[i].Name, objs[i].Generation) }
	// 0: its backfill job for v2 is done; 1: its own job was v2's already; 2: its own
	// job was v1's (to do); 3: never processed (to do).
	f.finish(t, pipeline.VersionedKey(key(0), "v2"), src(0))
	f.finish(t, key(1), src(1), meta.Result{Analysis: "faces", ModelVersion: "v2"})
	f.finish(t, key(2), src(2), meta.Result{Analysis: "faces", ModelVersion: "v1"})
	rep, err := backfill.Run(ctx, f.options())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 2 || len(rep.Skipped) != 2 {
		t.Fatalf("report %+v, want 2 queued and 2 skipped", rep)
	}
	if !strings.Contains(rep.Skipped[0].Why, "already processed for version v2") || !strings.Contains(rep.Skipped[1].Why, "already processed by version v2") {
		t.Errorf("skips %+v", rep.Skipped)
	}
}

// --from-version: the images a version produced results for, once each, in pages of
// any size: an image's own job and its backfill job sort side by side, in one page or
// across two.
func TestFromVersionQueuesThatVersionsImages(t *testing.T) {
	for _, size := range []int{1, 2, 500} {
		t.Run(fmt.Sprint("pages of ", size), func(t *testing.T) { fromVersion(t, size) })
	}
}

func fromVersion(t *testing.T, size int) {
	f := newFixture(t, 3)
	ctx := context.Background()
	objs, _ := f.in.List(ctx, blob.Query{Prefix: "cam/"})
	for i, v := range []string{"v1", "v1", "v0"} {
		src := meta.Source{Bucket: "incoming", Object: objs[i].Name, Generation: objs[i].Generation}
		f.finish(t, pipeline.ObjectKey("incoming", objs[i].Name, objs[i].Generation), src, meta.Result{ModelVersion: v})
	}
	// A backfill job of image 0 by v1 too: still one image.
	src0 := meta.Source{Bucket: "incoming", Object: objs[0].Name, Generation: objs[0].Generation}
	f.finish(t, pipeline.VersionedKey(pipeline.ObjectKey("incoming", objs[0].Name, objs[0].Generation), "v1"), src0, meta.Result{ModelVersion: "v1"})
	o := f.options()
	o.Prefix, o.FromVersion, o.PageSize = "", "v1", size
	rep, err := backfill.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 2 || rep.Published != 2 {
		t.Fatalf("report %+v, want the 2 images v1 processed", rep)
	}
	for _, tk := range f.pub.tasks {
		if tk.Source.Object == objs[2].Name || !strings.HasSuffix(tk.Key, "@v=v2") {
			t.Errorf("task %+v", tk)
		}
	}
}

// --rate paces the tasks: n tasks at r a second take at least (n-1)/r.
func TestRateLimits(t *testing.T) {
	f := newFixture(t, 6)
	o := f.options()
	o.Rate = 25
	start := time.Now()
	if _, err := backfill.Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if took, least := time.Since(start), 5*time.Second/25; took < least {
		t.Errorf("6 tasks at 25/s took %v, want at least %v", took, least)
	}
}

func TestDryRunQueuesNothingAndSavesNoCursor(t *testing.T) {
	f := newFixture(t, 5)
	o := f.options()
	o.DryRun = true
	rep, err := backfill.Run(context.Background(), o)
	if err != nil || rep.Published != 5 || len(f.pub.tasks) != 0 {
		t.Fatalf("dry run %+v, %v, %d tasks", rep, err, len(f.pub.tasks))
	}
	if _, err := f.store.Cursor(context.Background(), rep.Cursor); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("dry run saved a cursor: %v", err)
	}
}

func TestRejectsABadVersion(t *testing.T) {
	f := newFixture(t, 1)
	o := f.options()
	o.Version = "two words"
	if _, err := backfill.Run(context.Background(), o); !errors.Is(err, backfill.ErrNoVersion) {
		t.Fatalf("err = %v, want ErrNoVersion", err)
	}
}

// Locally, jobs are keyed by content: with ContentKeys an image a local run already
// processed with the version is recognised and skipped, and the others are queued
// under their content key.
func TestContentKeysMatchLocalRuns(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	f.finish(t, pipeline.ContentKey([]byte{0xff, 0xd8, 0}), meta.Source{Bucket: "incoming", Object: "cam/000.jpg"}, meta.Result{ModelVersion: "v2"})
	o := f.options()
	o.ContentKeys = true
	rep, err := backfill.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 1 || len(rep.Skipped) != 1 || rep.Skipped[0].Examples[0] != "cam/000.jpg" {
		t.Fatalf("report %+v, want cam/000.jpg skipped and cam/001.jpg queued", rep)
	}
	if want := pipeline.VersionedKey(pipeline.ContentKey([]byte{0xff, 0xd8, 1}), "v2"); f.pub.tasks[0].Key != want {
		t.Errorf("task key %q, want %q", f.pub.tasks[0].Key, want)
	}
}

// Issue 24 #9: hashing an object for its content key reads at most prepare.maxBytes
// of it: a larger object is skipped, said why, not read into memory whole.
func TestContentKeysReadAtMostMaxBytes(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	if _, err := f.in.Put(ctx, "cam/huge.jpg", make([]byte, 1<<20), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	o := f.options()
	o.ContentKeys, o.MaxBytes = true, 64<<10
	rep, err := backfill.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 1 || len(rep.Skipped) != 1 || rep.Skipped[0].Examples[0] != "cam/huge.jpg" || !strings.Contains(rep.Skipped[0].Why, "maxBytes") {
		t.Fatalf("report %+v: want cam/000.jpg queued and cam/huge.jpg skipped for its size", rep)
	}
}

// A run that stops before it handles anything new keeps the cursor where it was, and
// a cancelled run (Ctrl-C) still saves where it got to.
func TestStoppingKeepsTheCursor(t *testing.T) {
	f := newFixture(t, 30)
	ctx := context.Background()
	f.pub.failAfter = 12
	if _, err := backfill.Run(ctx, f.options()); err == nil {
		t.Fatal("first run: want the publish error")
	}
	// Fails at its first publish: nothing new handled.
	if _, err := backfill.Run(ctx, f.options()); err == nil {
		t.Fatal("second run: want the publish error")
	}
	f.pub.failAfter = 0
	rep, err := backfill.Run(ctx, f.options())
	if err != nil || rep.Resumed != 12 || rep.Published != 18 {
		t.Fatalf("third run %+v, %v: want 12 resumed, 18 queued", rep, err)
	}

	g := newFixture(t, 30)
	cctx, cancel := context.WithCancel(ctx)
	o := g.options()
	o.SaveEvery = time.Hour // only the save on stopping counts
	o.ProgressEvery = time.Nanosecond
	o.Progress = func(p backfill.Progress) {
		if p.Published == 10 {
			cancel()
		}
	}
	if _, err := backfill.Run(cctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	rep, err = backfill.Run(ctx, g.options())
	if err != nil || rep.Resumed != 10 || rep.Published != 20 {
		t.Fatalf("after Ctrl-C: %+v, %v; want 10 resumed, 20 queued", rep, err)
	}
}

// pager is the incoming bucket as a large one behaves: it records every page asked
// for, and holds back each page after the first until a task has been queued.
type pager struct {
	*local.Bucket
	queued chan struct{} // closed at the first publish
	mu     sync.Mutex
	limits []int
	early  bool // a later page was read before any task was queued
}

func (p *pager) List(ctx context.Context, q blob.Query) ([]blob.Attrs, error) {
	p.mu.Lock()
	first := len(p.limits) == 0 || q.After == ""
	p.limits = append(p.limits, q.Limit)
	p.mu.Unlock()
	if !first {
		select {
		case <-p.queued:
		case <-time.After(5 * time.Second):
			p.mu.Lock()
			p.early = true
			p.mu.Unlock()
		}
	}
	return p.Bucket.List(ctx, q)
}

type signal struct {
	*recorder
	once sync.Once
	c    chan struct{}
}

func (s *signal) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (string, error) {
	id, err := s.recorder.Publish(ctx, topic, data, attrs)
	s.once.Do(func() { close(s.c) })
	return id, err
}

// A bucket of any size is read a page at a time, and the first task is queued after
// the first page: the run used to list the whole scope into memory before it queued
// anything (minutes and gigabytes for millions of objects).
func TestReadsTheScopeAPageAtATime(t *testing.T) {
	f := newFixture(t, 35)
	queued := make(chan struct{})
	p := &pager{Bucket: f.in, queued: queued}
	o := f.options()
	o.Incoming, o.Publisher, o.PageSize = p, &signal{recorder: f.pub, c: queued}, 10
	var totals []int
	o.ProgressEvery = time.Nanosecond
	o.Progress = func(pr backfill.Progress) { totals = append(totals, pr.Total) }
	rep, err := backfill.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 35 || rep.Total != 35 || len(f.pub.tasks) != 35 {
		t.Fatalf("report %+v, %d tasks; want all 35 queued", rep, len(f.pub.tasks))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.limits {
		if l <= 0 || l > 10 {
			t.Errorf("a listing asked for %d objects, want pages of at most 10 (every list: %v)", l, p.limits)
			break
		}
	}
	if p.early {
		t.Error("a second page was read before the first task was queued")
	}
	if last := totals[len(totals)-1]; last != 35 {
		t.Errorf("the last progress says %d in scope, want 35", last)
	}
	for _, n := range totals {
		if n != 0 && n != 35 {
			t.Errorf("progress totals %v: want 0 (still counting) or 35", totals)
			break
		}
	}
}

// A re-run over images all processed already skips each, and the report keeps a count
// and a few names per reason, not every name.
func TestSkipsAreCountedNotKept(t *testing.T) {
	f := newFixture(t, 30)
	ctx := context.Background()
	objs, _ := f.in.List(ctx, blob.Query{Prefix: "cam/"})
	for _, a := range objs {
		src := meta.Source{Bucket: "incoming", Object: a.Name, Generation: a.Generation}
		f.finish(t, pipeline.VersionedKey(pipeline.ObjectKey("incoming", a.Name, a.Generation), "v2"), src)
	}
	o := f.options()
	o.PageSize = 7
	rep, err := backfill.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published != 0 || rep.Progress.Skipped != 30 || len(rep.Skipped) != 1 {
		t.Fatalf("report %+v, want 30 skipped for one reason", rep)
	}
	if g := rep.Skipped[0]; g.Count != 30 || len(g.Examples) != 3 || g.Examples[0] != "cam/000.jpg" {
		t.Errorf("skips %+v, want 30 counted and the first 3 named", g)
	}
}
