package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/racetest"
	"github.com/visionstack/visionstack/runtime/act"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/testdata/photos"
)

// flakyModel answers 503 (transient) for its first failures calls, then one face.
type flakyModel struct {
	failures int32
	calls    atomic.Int32
}

func (m *flakyModel) Predict(ctx context.Context, in []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	if m.calls.Add(1) <= m.failures {
		return nil, errors.Join(model.ErrTransient, errors.New("503 Service Unavailable"))
	}
	return []model.Prediction{{IDs: []string{"1"}, DisplayNames: []string{"face"}, Confidences: []float64{0.9},
		BBoxes: [][4]float64{{0.4, 0.6, 0.2, 0.5}}}}, nil
}

func setup(t *testing.T, m model.Predictor) (*localmode.Env, *pipeline.Pipeline, pipeline.Task) {
	t.Helper()
	return setupLease(t, m, 0)
}

func setupLease(t *testing.T, m model.Predictor, lease time.Duration) (*localmode.Env, *pipeline.Pipeline, pipeline.Task) {
	t.Helper()
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	env, err := localmode.Open(cfg, t.TempDir(), localmode.Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Models: map[string]model.Predictor{"builtin:faces": m}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	p := env.Pipeline
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := env.Incoming.Put(ctx, "in/grace.jpg", data, blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return env, p, pipeline.Task{Key: pipeline.ObjectKey("incoming", "in/grace.jpg", a.Generation),
		Source: meta.Source{Bucket: "incoming", Object: "in/grace.jpg", Generation: a.Generation}}
}

func events(t *testing.T, env *localmode.Env) int {
	t.Helper()
	msgs, err := env.Queue.Messages(context.Background(), localmode.ProcessedTopic)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// Three deliveries of one task, two of them concurrent: one effect.
func TestDuplicateDeliveriesHaveOneEffect(t *testing.T) {
	m := &flakyModel{}
	env, p, task := setup(t, m)
	ctx := context.Background()
	wins, losers := racetest.Winners(2, func(int) error {
		out, err := p.Process(ctx, task)
		if err == nil && out.Skipped {
			return errors.New("skipped")
		}
		return err
	})
	for _, err := range losers {
		if err.Error() != "skipped" && !errors.Is(err, meta.ErrBusy) {
			t.Fatalf("concurrent duplicate: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent deliveries did the work, want 1", wins)
	}
	out, err := p.Process(ctx, task)
	if err != nil || !out.Skipped {
		t.Fatalf("third delivery = %+v, %v; want skipped", out, err)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("model called %d times, want 1", n)
	}
	objs, _ := env.Processed.List(ctx, blob.Query{})
	if len(objs) != 1 || events(t, env) != 1 {
		t.Fatalf("%d processed objects and %d events, want 1 and 1", len(objs), events(t, env))
	}
}

// A model answering 503 twice: the first attempts fail transiently, release the claim,
// and a later delivery completes.
func TestTransientModelErrorRetriedThenCompleted(t *testing.T) {
	m := &flakyModel{failures: 2}
	env, p, task := setup(t, m)
	ctx := context.Background()
	for i := range 2 {
		_, err := p.Process(ctx, task)
		if !errors.Is(err, model.ErrTransient) {
			t.Fatalf("attempt %d = %v, want a transient error", i+1, err)
		}
		j, _ := env.Meta.Get(ctx, task.Key)
		if j.State != meta.StateProcessing {
			t.Fatalf("after a transient failure the job is %s", j.State)
		}
	}
	out, err := p.Process(ctx, task)
	if err != nil || out.Job.State != meta.StateDone || out.Job.Attempts != 3 {
		t.Fatalf("third attempt = %+v, %v", out.Job, err)
	}
	if objs, _ := env.Processed.List(ctx, blob.Query{}); len(objs) != 1 {
		t.Fatalf("%d processed objects", len(objs))
	}
}

// A crash after the output was stored but before the record: the retry reuses the
// stored output (same key) instead of writing a second one.
func TestRetryAfterCrashReusesStoredOutput(t *testing.T) {
	env, p, task := setup(t, &flakyModel{})
	ctx := context.Background()
	if _, err := env.Processed.Put(ctx, "in/grace.jpg", []byte("from the crashed attempt"),
		blob.PutOptions{Metadata: map[string]string{"visionstack-key": task.Key}}); err != nil {
		t.Fatal(err)
	}
	before, _ := env.Processed.Attrs(ctx, "in/grace.jpg")
	out, err := p.Process(ctx, task)
	if err != nil || out.Job.State != meta.StateDone {
		t.Fatalf("process: %+v %v", out.Job, err)
	}
	// OutputName maps in/grace.jpg to in/grace.jpg (already .jpg).
	after, _ := env.Processed.Attrs(ctx, "in/grace.jpg")
	if after.Generation != before.Generation || out.Job.Outputs[0].Generation != before.Generation {
		t.Fatalf("the retry rewrote the output: generation %d → %d", before.Generation, after.Generation)
	}
}

// An object overwritten after its task was queued: the stale task is recorded as
// superseded, not processed with the new bytes.
func TestSupersededGenerationNotProcessed(t *testing.T) {
	env, p, task := setup(t, &flakyModel{})
	ctx := context.Background()
	if _, err := env.Incoming.Put(ctx, "in/grace.jpg", []byte("newer"), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := p.Process(ctx, task)
	if err != nil || out.Job.State != meta.StateQuarantined || !strings.Contains(out.Job.Reason, "superseded") {
		t.Fatalf("stale task = %+v, %v", out.Job, err)
	}
	if objs, _ := env.Processed.List(ctx, blob.Query{}); len(objs) != 0 {
		t.Fatal("stale task wrote an output")
	}
}

// A malformed message can never succeed: it is dead-lettered at once.
func TestMalformedMessageIsPermanent(t *testing.T) {
	_, p, _ := setup(t, &flakyModel{})
	err := p.Handle(context.Background(), &queueMessage)
	if err == nil {
		t.Fatal("malformed message accepted")
	}
}

var queueMessage = queue.Message{ID: "1", Data: []byte("not json")}

// slowModel answers after a delay, counting calls.
type slowModel struct {
	flakyModel
	delay time.Duration
}

func (m *slowModel) Predict(ctx context.Context, in []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	time.Sleep(m.delay)
	return m.flakyModel.Predict(ctx, in, p)
}

// A worker died holding the claim (kill -9): the next delivery takes the job over
// once the short lease runs out, instead of failing "busy" until the ack deadline.
func TestOrphanedClaimTakenOverWithinTheLease(t *testing.T) {
	env, p, task := setupLease(t, &flakyModel{}, time.Second)
	ctx := context.Background()
	if _, err := env.Meta.Claim(ctx, task.Key, task.Source, "dead-worker/1", time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := p.Process(ctx, task)
	if err != nil || out.Job.State != meta.StateDone {
		t.Fatalf("delivery after the crash = %+v, %v; want done", out.Job, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took over after %v, want about the 1 s lease", took)
	}
}

// A job that runs for several leases keeps its claim (heartbeat): a second delivery
// meanwhile waits instead of taking it over or spending an attempt, then skips.
func TestHeartbeatKeepsALongJobsClaim(t *testing.T) {
	m := &slowModel{delay: 2500 * time.Millisecond}
	env, p, task := setupLease(t, m, 600*time.Millisecond)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := p.Process(ctx, task); first <- err }()
	time.Sleep(200 * time.Millisecond)
	out, err := p.Process(ctx, task)
	if err != nil || !out.Skipped {
		t.Fatalf("second delivery = %+v, %v; want it to wait, then skip", out, err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("model called %d times: the long job's claim was taken over", n)
	}
	if objs, _ := env.Processed.List(ctx, blob.Query{}); len(objs) != 1 || events(t, env) != 1 {
		t.Fatalf("%d outputs and %d events, want 1 and 1", len(objs), events(t, env))
	}
}

// Two generations of one object in flight: the older finishes last and must not
// replace the newer's output; it is refused as stale (permanent), and the newer
// output stays.
func TestOlderGenerationNeverReplacesNewerOutput(t *testing.T) {
	env, _, task := setup(t, &flakyModel{})
	ctx := context.Background()
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	actor := act.New(cfg.Pipeline.Actions, env.Processed, env.Quarantine, env.Meta, env.Queue, localmode.ProcessedTopic)
	newer := task
	newer.Source.Generation++
	newer.Key = pipeline.ObjectKey(newer.Source.Bucket, newer.Source.Object, newer.Source.Generation)
	finish := func(tk pipeline.Task, data string) error {
		c, err := env.Meta.Claim(ctx, tk.Key, tk.Source, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return actor.Done(ctx, c, meta.Job{Key: tk.Key, Source: tk.Source}, []byte(data))
	}
	if err := finish(newer, "newer"); err != nil {
		t.Fatal(err)
	}
	err = finish(task, "older")
	if !errors.Is(err, act.ErrStale) || !fault.IsPermanent(err) {
		t.Fatalf("older generation finishing last = %v, want permanent ErrStale", err)
	}
	got, _, err := blob.ReadAll(ctx, env.Processed, act.OutputName(task.Source.Object), 0)
	if err != nil || string(got) != "newer" {
		t.Fatalf("output = %q, %v; want the newer generation's", got, err)
	}
}
