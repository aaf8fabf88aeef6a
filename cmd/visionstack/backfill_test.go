package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/runtime/cloudmode"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/testdata/photos"
)

const backfillChildEnv = "VISIONSTACK_BACKFILL_CHILD"

// countingModel finds nothing and counts its calls: one call per image analyzed.
type countingModel struct{ calls atomic.Int64 }

func (m *countingModel) Predict(_ context.Context, in []model.Instance, _ model.Parameters) ([]model.Prediction, error) {
	m.calls.Add(int64(len(in)))
	out := make([]model.Prediction, len(in))
	for i := range out {
		out[i] = model.Prediction{IDs: []string{}, DisplayNames: []string{}, Confidences: []float64{}, BBoxes: [][4]float64{}, Version: "v2"}
	}
	return out, nil
}

// TestBackfillOnEmulatorsSurvivesKill: 1,000 objects in the incoming bucket (fake
// GCS), `backfill --backend cloud` publishing to the Pub/Sub emulator with its cursor in
// the Firestore emulator, killed with SIGKILL half-way and run again, while workers
// process the work topic as Cloud Run would. Every image is processed exactly once
// for the new version (one model call each, one final job), and the second run
// resumes where the first stopped instead of starting over.
func TestBackfillOnEmulatorsSurvivesKill(t *testing.T) {
	runChildIfAsked(backfillChildEnv)
	if testing.Short() {
		t.Skip("backfill on the emulators: not in -short")
	}
	const n = 1000
	psEmu, err := emulator.PubSub("backfill-e2e")
	if emulator.Absent(err) && os.Getenv("CI") == "" {
		t.Skip("Pub/Sub emulator not installed (scripts/install-deps.sh):", err)
	}
	must(t, err)
	t.Cleanup(psEmu.Stop)
	fsEmu, err := emulator.Firestore()
	must(t, err)
	t.Cleanup(fsEmu.Stop)
	t.Setenv("PUBSUB_EMULATOR_HOST", psEmu.Host)
	t.Setenv("FIRESTORE_EMULATOR_HOST", fsEmu.Host)
	t.Setenv("VISIONSTACK_FIRESTORE_DATABASE", "(default)")
	ctx := context.Background()

	root := t.TempDir()
	y := mustRead(t, "../../projects/demo/project.yaml")
	y = strings.Replace(y, "gcp: {project: visionstack-demo,", "gcp: {project: backfill-e2e,", 1)
	y = strings.Replace(y, "blur: {analysis: faces, padding: 0.15}", "blur: {analysis: faces, padding: 0.15, verify: false}", 1)
	file := writeDemo(t, root, y)
	cfg, err := config.LoadFile(file)
	must(t, err)
	names := cfg.Names()

	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1", Writer: io.Discard})
	must(t, err)
	t.Cleanup(gcs.Stop)
	t.Setenv("STORAGE_EMULATOR_HOST", gcs.URL())
	for _, b := range []string{names.IncomingBucket, names.QuarantineBucket, names.ProcessedBucket} {
		gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	must(t, err)
	imaging.Init(0)
	small, err := imaging.Upscale(src, 48, 80) // a small real photo: the work, not the model, is under test
	must(t, err)
	for i := range n {
		gcs.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: names.IncomingBucket,
			Name: fmt.Sprintf("2026/%04d.jpg", i), ContentType: "image/jpeg"}, Content: small})
	}

	psc, err := ps.NewClient(ctx, cfg.GCP.Project)
	must(t, err)
	t.Cleanup(func() { psc.Close() })
	topic := "projects/" + cfg.GCP.Project + "/topics/" + names.UploadedTopic
	sub := "projects/" + cfg.GCP.Project + "/subscriptions/backfill-workers"
	for _, tp := range []string{names.UploadedTopic, names.ProcessedTopic} {
		_, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + cfg.GCP.Project + "/topics/" + tp})
		must(t, err)
	}
	_, err = psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 30})
	must(t, err)

	// The workers: the cloud pipeline on the work subscription, counting deliveries.
	mdl := &countingModel{}
	env, err := cloudmode.Open(ctx, cfg, cloudmode.Options{Models: map[string]model.Predictor{"builtin:faces": mdl},
		Database: "(default)", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	t.Cleanup(func() { env.Close() })
	var delivered atomic.Int64
	var mu sync.Mutex
	perKey := map[string]int{}
	wctx, stopWorkers := context.WithCancel(ctx)
	workersDone := make(chan error, 1)
	go func() {
		workersDone <- env.Queue.Receive(wctx, sub, func(ctx context.Context, m *queue.Message) error {
			delivered.Add(1)
			mu.Lock()
			perKey[m.Attributes["key"]]++
			mu.Unlock()
			return env.Pipeline.Handle(ctx, m)
		})
	}()

	args := []string{"--root", root, "backfill", "demo", "--backend", "cloud", "--version", "v2", "--rate", "150", "--no-progress"}
	child := exec.Command(os.Args[0], "-test.run=^TestBackfillOnEmulatorsSurvivesKill$")
	child.Env = append(os.Environ(), backfillChildEnv+"="+strings.Join(args, "\x1f"))
	child.Stdout, child.Stderr = io.Discard, io.Discard
	must(t, child.Start())
	deadline := time.Now().Add(2 * time.Minute)
	for delivered.Load() < n/2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	must(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	killedAt := delivered.Load()
	if killedAt >= n || killedAt < n/4 {
		t.Fatalf("killed after %d deliveries, want about half of %d", killedAt, n)
	}

	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("second backfill: %v\n%s", err, out)
	}
	t.Logf("killed after %d deliveries; second run:\n%s", killedAt, out)
	var total, queued, skipped, resumed int
	if _, err := fmt.Sscanf(out[strings.Index(out, "\n")+1:], "%d images in scope: %d queued, %d skipped, %d handled by an earlier run",
		&total, &queued, &skipped, &resumed); err != nil {
		t.Fatalf("second run's report: %v\n%s", err, out)
	}
	if total != n || resumed < int(killedAt)-100 || queued+skipped+resumed != n {
		t.Errorf("second run: %d in scope, %d queued, %d skipped, %d resumed; want %d in scope, resuming after about %d", total, queued, skipped, resumed, n, killedAt)
	}

	// Wait for the workers to finish every image.
	store := env.Meta
	done := func() int {
		c := 0
		for i := range n {
			a, _ := env.Incoming.Attrs(ctx, fmt.Sprintf("2026/%04d.jpg", i))
			j, err := store.Get(ctx, pipeline.VersionedKey(pipeline.ObjectKey(names.IncomingBucket, a.Name, a.Generation), "v2"))
			if err == nil && j.State == meta.StateDone {
				c++
			}
		}
		return c
	}
	deadline = time.Now().Add(3 * time.Minute)
	for mdl.calls.Load() < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // a duplicate still in flight would call the model again
	stopWorkers()
	<-workersDone
	if got := done(); got != n {
		t.Fatalf("%d of %d images done for v2", got, n)
	}
	if calls := mdl.calls.Load(); calls != n {
		t.Errorf("the model was called %d times for %d images: each must be processed exactly once", calls, n)
	}
	dups := 0
	for _, c := range perKey {
		dups += c - 1
	}
	t.Logf("%d deliveries for %d keys (%d duplicates, deduplicated by the versioned key)", delivered.Load(), len(perKey), dups)
	if len(perKey) != n {
		t.Errorf("%d keys delivered, want %d", len(perKey), n)
	}
}
