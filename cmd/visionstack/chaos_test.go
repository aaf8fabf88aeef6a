package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/visionstack/visionstack/internal/cloudrun"
	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	fsmeta "github.com/visionstack/visionstack/runtime/meta/firestore"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/model/kserve"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/testdata/photos"
)

const chaosChildEnv = "VISIONSTACK_CHAOS_CHILD"

// TestChaos runs `serve` on the emulators as Cloud Run would — a separate process
// behind a front that answers 503 while it is down — with a model answering 503 one
// time in five, and kills it with SIGKILL at random moments. Then every uploaded
// image must be accounted for: one final record, one output version, at least one
// processed event; lost = duplicated = stuck = 0. It runs once calm and once with the
// kills, and logs both drain times.
//
// make test runs a small version (VISIONSTACK_CHAOS_IMAGES, default 40); make chaos
// the full one (320 images), writing the figures to bench/CHAOS.md.
func TestChaos(t *testing.T) {
	runChildIfAsked(chaosChildEnv)
	if testing.Short() {
		t.Skip("chaos: not in -short")
	}
	n := envInt("VISIONSTACK_CHAOS_IMAGES", 40)
	kills := envInt("VISIONSTACK_CHAOS_KILLS", 4)
	psEmu, err := emulator.PubSub("chaos")
	if emulator.Absent(err) && os.Getenv("CI") == "" {
		t.Skip("Pub/Sub emulator not installed (scripts/install-deps.sh):", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(psEmu.Stop)
	fsEmu, err := emulator.Firestore()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fsEmu.Stop)
	t.Setenv("PUBSUB_EMULATOR_HOST", psEmu.Host)
	t.Setenv("FIRESTORE_EMULATOR_HOST", fsEmu.Host)

	calm := runChaos(t, "chaos-calm", n, 0)
	rough := runChaos(t, "chaos-kills", n, kills)
	ratio := rough.drain.Seconds() / calm.drain.Seconds()
	summary := fmt.Sprintf("%d images, model 503 one time in five: calm %s; with %d kills %s (%.2f×); model calls %d and %d (%d and %d answered 503); %d and %d dead letters re-queued by the reconciler; duplicate processed events %d and %d",
		n, calm.drain.Round(100*time.Millisecond), kills, rough.drain.Round(100*time.Millisecond), ratio,
		calm.modelCalls, rough.modelCalls, calm.model503, rough.model503, calm.requeued, rough.requeued, calm.dupEvents, rough.dupEvents)
	t.Log(summary)
	if p := os.Getenv("VISIONSTACK_CHAOS_REPORT"); p != "" {
		report := fmt.Sprintf("# Chaos run\n\n`make chaos` (`TestChaos` in cmd/visionstack), %s, on this machine (2 cores). `serve --backend cloud` on the emulators behind the Cloud Run front stand-in (`internal/cloudrun`) with authentication on: a private service whose invoker is the push account, every push signed as Pub/Sub signs it, checked and stripped by the front, its claims checked by `serve`.\n\n%s.\n\nKill moments (images final when killed): %v.\n\nlost = duplicated = stuck = 0 in both runs (the test fails otherwise).\n",
			time.Now().UTC().Format("2006-01-02"), summary, rough.killedAt)
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func envInt(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v >= 0 {
		return v
	}
	return d
}

type chaosResult struct {
	drain                time.Duration
	modelCalls, model503 int64
	requeued, dupEvents  int
	killedAt             []int
}

// flakyModel is a KServe v2 model server of the built-in face model that answers
// 503 one time in five.
func flakyModel(t *testing.T) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	imaging.Init(0)
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	var calls, failed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if rand.IntN(5) == 0 {
			failed.Add(1)
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		var req kserve.InferRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var contents []string
		if err := json.Unmarshal(req.Inputs[0].Data, &contents); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in := make([]model.Instance, len(contents))
		for i, c := range contents {
			in[i] = model.Instance{Content: c}
		}
		p := model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 1000}
		if v, ok := req.Parameters["maxPredictions"].(float64); ok {
			p.MaxPredictions = int(v)
		}
		preds, err := m.Predict(r.Context(), in, p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		docs := make([]string, len(preds))
		for i, pr := range preds {
			b, _ := json.Marshal(pr)
			docs[i] = string(b)
		}
		data, _ := json.Marshal(docs)
		_ = json.NewEncoder(w).Encode(kserve.InferResponse{ModelName: "faces",
			Outputs: []kserve.Tensor{{Name: "predictions", Shape: []int{len(docs)}, Datatype: "BYTES", Data: data}}})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &failed
}

// serveChild is `serve` in a child process (this test binary, re-entered).
func serveChild(args, env []string, log io.Writer) *cloudrun.Instance {
	return &cloudrun.Instance{New: func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChaos$")
		cmd.Env = append(append(os.Environ(), env...), chaosChildEnv+"="+strings.Join(args, "\x1f"))
		cmd.Stdout, cmd.Stderr = log, log
		return cmd
	}}
}

func runChaos(t *testing.T, gcpProject string, n, kills int) chaosResult {
	ctx := context.Background()
	root := t.TempDir()
	mdl, calls, failed := flakyModel(t)
	y := mustRead(t, "../../projects/demo/project.yaml")
	y = strings.Replace(y, "gcp: {project: visionstack-demo,", "gcp: {project: "+gcpProject+",", 1)
	y = strings.Replace(y, `model: "builtin:faces"`, `model: "kserve:`+mdl.URL+`/v2/models/faces"`, 1)
	writeDemo(t, root, y)
	cfg, err := config.LoadFile(filepath.Join(root, "projects", "demo", "project.yaml"))
	must(t, err)
	names := cfg.Names()

	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1",
		EventOptions: fakestorage.EventManagerOptions{ProjectID: gcpProject, TopicName: names.UploadedTopic,
			Bucket: names.IncomingBucket, NotifyOn: fakestorage.EventNotificationOptions{Finalize: true}}, Writer: io.Discard})
	must(t, err)
	t.Cleanup(gcs.Stop)
	for _, b := range []string{names.IncomingBucket, names.QuarantineBucket} {
		gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: names.ProcessedBucket, VersioningEnabled: true}) // as the stack makes it

	psc, err := ps.NewClient(ctx, gcpProject)
	must(t, err)
	t.Cleanup(func() { psc.Close() })
	topic := func(id string) string { return "projects/" + gcpProject + "/topics/" + id }
	sub := func(id string) string { return "projects/" + gcpProject + "/subscriptions/" + id }
	for _, id := range []string{names.UploadedTopic, names.ProcessedTopic, names.DeadLetterTopic} {
		_, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(id)})
		must(t, err)
	}
	for id, tp := range map[string]string{names.ProcessedTopic + "-count": names.ProcessedTopic, names.DeadLetterSub: names.DeadLetterTopic} {
		_, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub(id), Topic: topic(tp), AckDeadlineSeconds: 10})
		must(t, err)
	}

	logDir := os.Getenv("VISIONSTACK_CHAOS_LOGDIR") // kept for a look after the run
	if logDir == "" {
		logDir = t.TempDir()
	}
	logf, err := os.Create(filepath.Join(logDir, gcpProject+"-serve.log"))
	must(t, err)
	defer logf.Close()
	frontLog, err := os.Create(filepath.Join(logDir, gcpProject+"-front.log"))
	must(t, err)
	defer frontLog.Close()
	// As the stack deploys it: a private service whose invoker is the push account,
	// the push audience a custom audience; Pub/Sub signs each push as that account.
	addr := freeAddr(t)
	pushAudience, pushSA := "visionstack-demo-push", "visionstack-demo-invoker@"+gcpProject+".iam.gserviceaccount.com"
	fr, err := cloudrun.Start(cloudrun.Options{Backend: addr, Invokers: []string{pushSA}, Audiences: []string{pushAudience}, Log: frontLog})
	must(t, err)
	t.Cleanup(fr.Close)
	signer := fr.PushSigner("/v1/pubsub/push", pushSA, pushAudience)
	t.Cleanup(signer.Close)
	_, err = psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub(names.PushSubscription), Topic: topic(names.UploadedTopic), AckDeadlineSeconds: 60,
		PushConfig:       &pubsubpb.PushConfig{PushEndpoint: signer.URL},
		RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(time.Second), MaximumBackoff: durationpb.New(5 * time.Second)},
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic(names.DeadLetterTopic), MaxDeliveryAttempts: int32(cfg.Delivery.MaxAttempts)},
	})
	must(t, err)

	// Count processed events while the run goes on.
	events := map[string]int{}
	var evMu sync.Mutex
	evCtx, stopEvents := context.WithCancel(ctx)
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		_ = psc.Subscriber(sub(names.ProcessedTopic+"-count")).Receive(evCtx, func(_ context.Context, m *ps.Message) {
			evMu.Lock()
			events[m.Attributes["key"]]++
			evMu.Unlock()
			m.Ack()
		})
	}()

	// K_SERVICE says "on Cloud Run", as Cloud Run sets it: serve then takes the tokens
	// the front has checked and stripped.
	child := serveChild([]string{"--root", root, "serve", "--project", "demo", "--backend", "cloud", "--addr", addr,
		"--push-audience", pushAudience, "--push-service-account", pushSA,
		"--log-format", "text", "--cloud-telemetry", "off", "--reconcile-every", "5s"},
		[]string{"K_SERVICE=visionstack-demo", "STORAGE_EMULATOR_HOST=" + gcs.URL(), "VISIONSTACK_FIRESTORE_DATABASE=(default)"}, logf)
	must(t, child.Start())
	defer child.Kill()
	waitHealthy(t, "http://"+addr+"/healthz") // Cloud Run's startup probe: to the container, not through the front

	fc, err := firestore.NewClientWithDatabase(ctx, gcpProject, "(default)")
	must(t, err)
	store := fsmeta.New(fc)
	t.Cleanup(func() { store.Close() })

	// Upload n photos: the fake's OBJECT_FINALIZE notifications drive the push path.
	files, _ := filepath.Glob(filepath.Join(photos.Dir(), "faces", "*.jpg"))
	keys := make([]string, n)
	start := time.Now()
	for i := range n {
		data, err := os.ReadFile(files[i%len(files)])
		must(t, err)
		obj := fmt.Sprintf("chaos/img-%04d.jpg", i)
		w := gcs.Client().Bucket(names.IncomingBucket).Object(obj).NewWriter(ctx)
		w.ContentType = "image/jpeg"
		_, err = w.Write(data)
		must(t, err)
		must(t, w.Close())
		keys[i] = pipeline.ObjectKey(names.IncomingBucket, obj, w.Attrs().Generation)
	}
	final := func() int {
		jobs, err := store.List(ctx, meta.Filter{State: meta.StateDone})
		if err != nil {
			return 0
		}
		q, _ := store.List(ctx, meta.Filter{State: meta.StateQuarantined})
		return len(jobs) + len(q)
	}

	// Kill at random moments: when a random share of the images (10%–80%) is final.
	var at []int
	for range kills {
		at = append(at, n/10+rand.IntN(max(1, n*7/10)))
	}
	slices.Sort(at)
	res := chaosResult{}
	deadline := time.Now().Add(time.Duration(n)*time.Second + 5*time.Minute)
	for done := 0; done < n && time.Now().Before(deadline); done = final() {
		if len(at) > 0 && done >= at[0] {
			at = at[1:]
			res.killedAt = append(res.killedAt, done)
			child.Kill()
			time.Sleep(time.Duration(200+rand.IntN(1500)) * time.Millisecond) // the new instance takes a moment
			must(t, child.Start())
			continue
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.drain = time.Since(start)
	time.Sleep(3 * time.Second) // late duplicates and events
	if child.Terminate() {
		t.Errorf("serve did not stop within Cloud Run's %v after SIGTERM", cloudrun.Grace)
	}
	stopEvents()
	<-evDone

	// Account for every key.
	var lost, stuck, quarantined, duplicated, noEvent []string
	processed := map[string]int{} // object → versions
	it := gcs.Client().Bucket(names.ProcessedBucket).Objects(ctx, &storage.Query{Versions: true})
	for {
		o, err := it.Next()
		if err == iterator.Done {
			break
		}
		must(t, err)
		processed[o.Name]++
	}
	for _, k := range keys {
		j, err := store.Get(ctx, k)
		switch {
		case err != nil:
			lost = append(lost, k)
			continue
		case !j.State.Final():
			stuck = append(stuck, fmt.Sprintf("%s (%s, %d attempts)", k, j.State, j.Attempts))
			continue
		case j.State == meta.StateQuarantined:
			quarantined = append(quarantined, k+": "+j.Reason)
			continue
		}
		if len(j.Outputs) != 1 || processed[j.Outputs[0].Object] != 1 {
			duplicated = append(duplicated, fmt.Sprintf("%s: outputs %v, versions %v", k, j.Outputs, processed))
		}
		if events[k] == 0 {
			noEvent = append(noEvent, k)
		}
		if events[k] > 1 {
			res.dupEvents += events[k] - 1
		}
	}
	all, err := store.List(ctx, meta.Filter{})
	must(t, err)
	if len(all) != n {
		duplicated = append(duplicated, fmt.Sprintf("%d job records for %d images", len(all), n))
	}
	if len(processed) != n {
		duplicated = append(duplicated, fmt.Sprintf("%d processed objects for %d images", len(processed), n))
	}
	logText, _ := os.ReadFile(logf.Name())
	res.requeued = strings.Count(string(logText), "reconcile: dead letter requeued")
	res.modelCalls, res.model503 = calls.Load(), failed.Load()
	t.Logf("%s: %d images, %d kills at %v, drained in %v; model calls %d (%d answered 503); %d dead letters re-queued; %d duplicate events",
		gcpProject, n, kills, res.killedAt, res.drain.Round(100*time.Millisecond), res.modelCalls, res.model503, res.requeued, res.dupEvents)
	if fr.Refused.Load() > 0 {
		t.Errorf("the front refused %d requests: a push was not authenticated as Cloud Run requires", fr.Refused.Load())
	}
	if len(lost)+len(stuck)+len(quarantined)+len(duplicated)+len(noEvent) > 0 {
		tail := string(logText)
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		// Each key that went wrong, its whole story in serve's log, and the front's
		// last requests: a key stuck once (a push the emulator never made again) left
		// only serve's tail to go on.
		var story strings.Builder
		for _, k := range slices.Concat(lost, stuck, quarantined, noEvent) {
			obj := regexp.MustCompile(`chaos/img-\d+\.jpg`).FindString(k)
			for line := range strings.Lines(string(logText)) {
				if obj != "" && strings.Contains(line, obj) {
					story.WriteString(line)
				}
			}
		}
		frontText, _ := os.ReadFile(frontLog.Name())
		if len(frontText) > 3000 {
			frontText = frontText[len(frontText)-3000:]
		}
		t.Fatalf("%s: lost %v\nstuck %v\nquarantined %v\nduplicated %v\nwithout an event %v\nserve's log ends:\n%s\nthose keys in serve's log:\n%s\nthe front's log ends:\n%s",
			gcpProject, lost, stuck, quarantined, duplicated, noEvent, tail, story.String(), frontText)
	}
	return res
}
