package reconcile_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/pipeline"
	qlocal "github.com/visionstack/visionstack/runtime/queue/local"
	"github.com/visionstack/visionstack/runtime/reconcile"
)

const (
	work = "uploaded"
	dead = work + qlocal.DeadLetterSuffix
)

type world struct {
	store *sqlite.Store
	q     *qlocal.Queue
	keys  map[string]string
}

func src(object string, gen int64) meta.Source {
	return meta.Source{Bucket: "incoming", Object: object, Generation: gen}
}

func objKey(object string, gen int64) string { return pipeline.ObjectKey("incoming", object, gen) }

// newWorld builds every kind of stuck work the reconciler must tell apart.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "visionstack.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	q, err := qlocal.Open(filepath.Join(dir, "queue.db"), qlocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	w := &world{store: store, q: q, keys: map[string]string{}}

	// A worker died holding this job; its message was dead-lettered long ago.
	w.keys["orphan"] = objKey("a.jpg", 1)
	if _, err := store.Claim(ctx, w.keys["orphan"], src("a.jpg", 1), "dead-worker", time.Second); err != nil {
		t.Fatal(err)
	}
	// The sync API primed this job, then its task was never queued.
	sum := strings.Repeat("ab", 32)
	w.keys["primed"] = "sha256:" + sum
	if err := store.Prime(ctx, w.keys["primed"], src(pipeline.SyncPrefix+sum+".jpeg", 2), nil); err != nil {
		t.Fatal(err)
	}
	// Running right now, with a lease far in the future.
	w.keys["running"] = objKey("b.jpg", 1)
	if _, err := store.Claim(ctx, w.keys["running"], src("b.jpg", 1), "live-worker", 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	// Tried 20 times (5 deliveries × 4 queueings): given up.
	w.keys["hopeless"] = objKey("c.jpg", 1)
	for range 20 {
		c, err := store.Claim(ctx, w.keys["hopeless"], src("c.jpg", 1), "w", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = store.Release(ctx, c)
	}
	// Done: its dead letter (a late duplicate) needs nothing.
	w.keys["done"] = objKey("d.jpg", 1)
	c, err := store.Claim(ctx, w.keys["done"], src("d.jpg", 1), "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Complete(ctx, c, meta.Job{State: meta.StateDone, Source: src("d.jpg", 1)}); err != nil {
		t.Fatal(err)
	}

	task := func(key string, s meta.Source) []byte {
		b, _ := json.Marshal(pipeline.Task{Key: key, Source: s})
		return b
	}
	deadLetter := func(data []byte, attrs map[string]string) {
		attrs["deadLetterReason"] = "model 503"
		attrs["deliveryAttempts"] = "5"
		if _, err := q.Publish(ctx, dead, data, attrs); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter(task(w.keys["done"], src("d.jpg", 1)), map[string]string{"key": w.keys["done"]})
	w.keys["notification"] = objKey("e.jpg", 7)
	deadLetter([]byte(`{"kind":"storage#object"}`), map[string]string{"eventType": "OBJECT_FINALIZE", "bucketId": "incoming", "objectId": "e.jpg", "objectGeneration": "7"})
	w.keys["requeued-thrice"] = objKey("f.jpg", 1)
	deadLetter(task(w.keys["requeued-thrice"], src("f.jpg", 1)), map[string]string{"key": w.keys["requeued-thrice"], reconcile.RequeuesAttribute: "3"})
	deadLetter([]byte("garbage"), map[string]string{})
	deadLetter(task("sha256:"+strings.Repeat("0", 64), src("g.jpg", 1)), map[string]string{"key": "forged"})
	return w
}

func (w *world) options() reconcile.Options {
	return reconcile.Options{Meta: w.store, Publisher: w.q, WorkTopic: work, Incoming: "incoming",
		DeadLetters: w.q, DeadLetterSub: dead, MaxAttempts: 5,
		Now: func() time.Time { return time.Now().Add(time.Hour) }} // an hour later: every expired claim is stale
}

// actions maps each item's key (or object, for what has no key) to its action.
func actions(r reconcile.Report) map[string]reconcile.Action {
	out := map[string]reconcile.Action{}
	for _, it := range r.Items {
		k := it.Key
		if k == "" || k == "forged" {
			k = it.Kind + ":" + it.Why[:min(len(it.Why), 12)]
		}
		out[k] = it.Action
	}
	return out
}

func TestReconcileRequeuesWhatCanRunAndReportsTheRest(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	// A dry run says what it would do and changes nothing.
	o := w.options()
	o.DryRun = true
	dry, err := reconcile.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := w.q.Pending(ctx, work); n != 0 {
		t.Fatalf("dry run queued %d tasks", n)
	}
	if n, _ := w.q.Pending(ctx, dead); n != 5 {
		t.Fatalf("dry run removed dead letters: %d left of 5", n)
	}

	r, err := reconcile.Run(ctx, w.options())
	if err != nil {
		t.Fatal(err)
	}
	got := actions(r)
	if d := actions(dry); len(d) != len(got) {
		t.Errorf("dry run reported %v, the real run %v", d, got)
	}
	want := map[string]reconcile.Action{
		w.keys["orphan"]:          reconcile.Requeued,
		w.keys["primed"]:          reconcile.Requeued,
		w.keys["hopeless"]:        reconcile.Reported,
		w.keys["done"]:            reconcile.Removed,
		w.keys["notification"]:    reconcile.Requeued,
		w.keys["requeued-thrice"]: reconcile.Reported,
	}
	for k, a := range want {
		if got[k] != a {
			t.Errorf("%s: %q, want %q", k, got[k], a)
		}
	}
	if _, ok := got[w.keys["running"]]; ok {
		t.Errorf("a running job was touched: %v", got)
	}
	if r.Count(reconcile.Reported) != 4 { // hopeless, requeued thrice, garbage, forged
		t.Errorf("reported %d items, want 4: %+v", r.Count(reconcile.Reported), r.Items)
	}

	// The work topic holds one task per re-queued item, each one the service accepts.
	msgs, err := w.q.Messages(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range msgs {
		tk, skip, err := pipeline.TaskFrom(m.Data, m.Attributes, "incoming")
		if err != nil || skip != "" {
			t.Fatalf("re-queued message %s %v is not accepted: %v %q", m.Data, m.Attributes, err, skip)
		}
		if _, ok := m.Attributes["deadLetterReason"]; ok {
			t.Errorf("re-queued message kept its dead-letter attributes: %v", m.Attributes)
		}
		keys = append(keys, tk.Key)
	}
	sort.Strings(keys)
	wantKeys := []string{w.keys["orphan"], w.keys["notification"], w.keys["primed"]}
	sort.Strings(wantKeys)
	if strings.Join(keys, " ") != strings.Join(wantKeys, " ") {
		t.Fatalf("work topic: %v, want %v", keys, wantKeys)
	}
	for _, m := range msgs {
		if m.Attributes["eventType"] != "" && m.Attributes[reconcile.RequeuesAttribute] != "1" {
			t.Errorf("re-queued dead letter carries %s=%q, want 1", reconcile.RequeuesAttribute, m.Attributes[reconcile.RequeuesAttribute])
		}
	}
	// What is reported stays in the dead letter for a person.
	if n, _ := w.q.Pending(ctx, dead); n != 3 {
		t.Fatalf("%d dead letters left, want the 3 reported ones", n)
	}
}

// A job touched recently is inside the subscription's own retries: left alone.
func TestReconcileLeavesRecentJobsToTheirRetries(t *testing.T) {
	w := newWorld(t)
	o := w.options()
	o.Now = time.Now
	o.DeadLetters = nil
	r, err := reconcile.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 0 {
		t.Fatalf("recent jobs touched: %+v", r.Items)
	}
}

// Issue 24 #5: a primed job nobody claimed was queued again by every pass of every
// instance (three passes, three tasks). Now the first re-queue marks it: the next
// passes, here and on another instance at once, leave it until it is stale again.
func TestStuckJobQueuedOncePerStaleTime(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	o := w.options()
	o.DeadLetters = nil // the stuck jobs only
	var wg sync.WaitGroup
	for range 2 { // two instances' passes at once
		wg.Go(func() {
			if _, err := reconcile.Run(ctx, o); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := reconcile.Run(ctx, o); err != nil { // a later pass, within StaleAfter
		t.Fatal(err)
	}
	msgs, err := w.q.Messages(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range msgs {
		count[m.Attributes["key"]]++
	}
	for _, k := range []string{w.keys["primed"], w.keys["orphan"]} {
		if count[k] != 1 {
			t.Errorf("%s queued %d times by three passes, want once", k, count[k])
		}
	}
	// Once stale again, it is queued again.
	later := o
	later.Now = func() time.Time { return o.Now().Add(2 * reconcile.DefaultStaleAfter) }
	if _, err := reconcile.Run(ctx, later); err != nil {
		t.Fatal(err)
	}
	msgs, _ = w.q.Messages(ctx, work)
	n := 0
	for _, m := range msgs {
		if m.Attributes["key"] == w.keys["primed"] {
			n++
		}
	}
	if n != 2 {
		t.Errorf("after another stale time the primed job was queued %d times in all, want 2", n)
	}
}
