package cloudmode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/visionstack/visionstack/runtime/models"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/visionstack/visionstack/internal/cloudrun"
	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/internal/peer"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/cloudmode"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/server"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/testdata/photos"
)

// TestMain starts Google's Firestore and Pub/Sub emulators for the package.
func TestMain(m *testing.M) {
	fsEmu, err := emulator.Firestore()
	if err == nil {
		var psEmu *emulator.Emulator
		psEmu, err = emulator.PubSub("visionstack-demo")
		if err == nil {
			os.Setenv("FIRESTORE_EMULATOR_HOST", fsEmu.Host)
			os.Setenv("PUBSUB_EMULATOR_HOST", psEmu.Host)
			code := m.Run()
			psEmu.Stop()
			fsEmu.Stop()
			os.Exit(code)
		}
		fsEmu.Stop()
	}
	if emulator.Absent(err) && os.Getenv("CI") == "" {
		fmt.Println("SKIP: emulators not installed (scripts/install-deps.sh):", err)
		os.Exit(0)
	}
	fmt.Println("FAIL:", err)
	os.Exit(1)
}

// faultyModel fails its first failures calls with a 503, or always when failures < 0.
type faultyModel struct {
	inner    model.Predictor
	failures int32
	calls    atomic.Int32
}

func (m *faultyModel) Predict(ctx context.Context, in []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	if n := m.calls.Add(1); m.failures < 0 || n <= m.failures {
		return nil, fmt.Errorf("%w: 503 Service Unavailable", model.ErrTransient)
	}
	return m.inner.Predict(ctx, in, p)
}

type chain struct {
	cfg       *config.Project
	env       *cloudmode.Env
	gcs       *fakestorage.Server
	psc       *ps.Client
	model     *faultyModel
	processed *ps.Subscriber
	dead      string
	url       string // our server
	spans     *tracetest.InMemoryExporter
}

// metric returns /metrics lines naming what.
func (c *chain) metric(t testing.TB, what string) string {
	t.Helper()
	resp, err := http.Get(c.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// newChain builds the whole chain for one test, with names unique to it:
// fake GCS (in process, notifying the Pub/Sub emulator) → Pub/Sub emulator push
// subscription with a dead-letter policy → our server → Firestore emulator + fake GCS.
func newChain(t testing.TB, name string, failures int32) *chain {
	t.Helper()
	return newChainWith(t, name, failures, nil, nil)
}

// newChainWith is newChain with the demo project file edited and more model clients.
func newChainWith(t testing.TB, name string, failures int32, edit func([]byte) []byte, models map[string]model.Predictor) *chain {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		raw = edit(raw)
	}
	raw = bytes.Replace(raw, []byte("name: demo"), []byte("name: "+name), 1)
	raw = bytes.Replace(raw, []byte("maxAttempts: 5, minBackoff: 10s"), []byte("maxAttempts: 5, minBackoff: 1s"), 1)
	cfg, err := config.Load("e2e.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Names()
	inner, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	fm := &faultyModel{inner: inner, failures: failures}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Cloud Storage: the fake, publishing OBJECT_FINALIZE of the incoming bucket.
	gcsSrv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1",
		EventOptions: fakestorage.EventManagerOptions{ProjectID: cfg.GCP.Project, TopicName: n.UploadedTopic,
			Bucket: n.IncomingBucket, NotifyOn: fakestorage.EventNotificationOptions{Finalize: true}}, Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gcsSrv.Stop)
	for _, b := range []string{n.IncomingBucket, n.ProcessedBucket, n.QuarantineBucket} {
		gcsSrv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	t.Setenv("STORAGE_EMULATOR_HOST", gcsSrv.URL())

	// Pub/Sub: topics and subscriptions as the stack makes them.
	psc, err := ps.NewClient(ctx, cfg.GCP.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { psc.Close() })
	topic := func(id string) string { return "projects/" + cfg.GCP.Project + "/topics/" + id }
	sub := func(id string) string { return "projects/" + cfg.GCP.Project + "/subscriptions/" + id }
	for _, id := range []string{n.UploadedTopic, n.ProcessedTopic, n.DeadLetterTopic} {
		if _, err := psc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for id, tp := range map[string]string{n.ProcessedTopic + "-test": n.ProcessedTopic, n.DeadLetterSub: n.DeadLetterTopic} {
		if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub(id), Topic: topic(tp), AckDeadlineSeconds: 10}); err != nil {
			t.Fatal(err)
		}
	}

	spans := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(ctx, telemetry.Options{Project: name, SpanExporter: spans})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	clients := map[string]model.Predictor{"builtin:faces": fm}
	maps.Copy(clients, models)
	env, err := cloudmode.Open(ctx, cfg, cloudmode.Options{Models: clients, Logger: log,
		Database: "(default)", Telemetry: tel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	// The push path as deployed: Pub/Sub signs each push as the invoker account, Cloud
	// Run's front checks the token and strips its signature, serve checks its claims.
	pushAudience, pushSA := "visionstack-"+name+"-push", "invoker@"+cfg.GCP.Project+".iam.gserviceaccount.com"
	srv := server.New(server.Options{Pipeline: env.Pipeline, Incoming: env.Incoming, Publisher: env.Queue, WorkTopic: topic(env.WorkTopic),
		MaxBody: int64(cfg.Pipeline.Prepare.MaxBytes), RetryAfter: time.Second, Logger: log, Metrics: tel.MetricsHandler(),
		PushAuth: &server.PushAuth{Audience: pushAudience, ServiceAccount: pushSA, CheckedByFront: true}})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	front, err := cloudrun.Start(cloudrun.Options{Backend: strings.TrimPrefix(hs.URL, "http://"), Invokers: []string{pushSA}, Audiences: []string{pushAudience}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(front.Close)
	signer := front.PushSigner("/v1/pubsub/push", pushSA, pushAudience)
	t.Cleanup(signer.Close)

	if _, err := psc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub(n.PushSubscription), Topic: topic(n.UploadedTopic), AckDeadlineSeconds: 60,
		PushConfig:       &pubsubpb.PushConfig{PushEndpoint: signer.URL},
		RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(time.Second), MaximumBackoff: durationpb.New(2 * time.Second)},
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic(n.DeadLetterTopic), MaxDeliveryAttempts: 5},
	}); err != nil {
		t.Fatal(err)
	}
	return &chain{cfg: cfg, env: env, gcs: gcsSrv, psc: psc, model: fm,
		processed: psc.Subscriber(sub(n.ProcessedTopic + "-test")), dead: sub(n.DeadLetterSub), url: hs.URL, spans: spans}
}

func (c *chain) upload(t testing.TB, object, photo string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", photo))
	if err != nil {
		t.Fatal(err)
	}
	return c.uploadBytes(t, object, data)
}

// uploadBytes writes data as object into the incoming bucket (its notification
// starts the push path) and returns the generation.
func (c *chain) uploadBytes(t testing.TB, object string, data []byte) int64 {
	t.Helper()
	w := c.gcs.Client().Bucket(c.env.Names.IncomingBucket).Object(object).NewWriter(context.Background())
	w.ContentType = "image/jpeg"
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Attrs().Generation
}

// waitJob polls Firestore until the job is final.
func (c *chain) waitJob(t testing.TB, key string, within time.Duration) meta.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		j, err := c.env.Meta.Get(context.Background(), key)
		if err == nil && j.State.Final() {
			return j
		}
		time.Sleep(200 * time.Millisecond)
	}
	j, err := c.env.Meta.Get(context.Background(), key)
	t.Fatalf("job %s not final within %s: %+v %v", key, within, j, err)
	return j
}

// pull collects the messages of a subscription for a while.
func pull(t *testing.T, s *ps.Subscriber, within time.Duration) []*ps.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var mu sync.Mutex
	var got []*ps.Message
	_ = s.Receive(ctx, func(_ context.Context, m *ps.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		m.Ack()
	})
	return got
}

func processedObjects(t *testing.T, c *chain) []*storage.ObjectAttrs {
	t.Helper()
	objs, err := c.env.Processed.List(context.Background(), blob.Query{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*storage.ObjectAttrs, 0, len(objs))
	for _, o := range objs {
		out = append(out, &storage.ObjectAttrs{Name: o.Name, Generation: o.Generation})
	}
	return out
}

// The real chain: object written to fake GCS → OBJECT_FINALIZE → Pub/Sub emulator
// push → our server → steps → processed object in fake GCS, record in the Firestore
// emulator, an event on the processed topic.
func TestEndToEndOnEmulators(t *testing.T) {
	c := newChain(t, "e2e-ok", 0)
	gen := c.upload(t, "photos/grace.jpg", "grace_hopper.jpg")
	key := pipeline.ObjectKey(c.env.Names.IncomingBucket, "photos/grace.jpg", gen)
	j := c.waitJob(t, key, 60*time.Second)
	if j.State != meta.StateDone || len(j.Results) != 1 || len(j.Results[0].Detections) == 0 || len(j.Outputs) != 1 {
		t.Fatalf("job: %+v", j)
	}
	if objs := processedObjects(t, c); len(objs) != 1 || objs[0].Name != "photos/grace.jpg" {
		t.Fatalf("processed bucket: %v", objs)
	}
	events := pull(t, c.processed, 3*time.Second)
	if len(events) != 1 || events[0].Attributes["key"] != key || events[0].Attributes["state"] != "done" {
		t.Fatalf("processed events: %d %v", len(events), events)
	}
}

// The sync API on the cloud backends: face boxes at once; the original lands in the
// incoming bucket (whose notification is the push path's trigger too) and the task
// the API queued completes through the push subscription, reusing the sync result.
func TestSyncAnalyzeOnCloudBackends(t *testing.T) {
	c := newChain(t, "e2e-sync", 0)
	img, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(c.url+"/v1/images:analyze", "image/jpeg", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	var ar server.AnalyzeResponse
	err = json.NewDecoder(resp.Body).Decode(&ar)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(ar.Results) != 1 || len(ar.Results[0].Detections) == 0 {
		t.Fatalf("analyze: %d %+v %v", resp.StatusCode, ar, err)
	}
	j := c.waitJob(t, ar.Key, 60*time.Second)
	if j.State != meta.StateDone || len(j.Outputs) != 1 {
		t.Fatalf("async remainder: %+v", j)
	}
	time.Sleep(2 * time.Second) // the stored original's own notification must not start a second job
	if n := c.model.calls.Load(); n != 1 {
		t.Errorf("model called %d times; the push path must reuse the sync result", n)
	}
	if objs := processedObjects(t, c); len(objs) != 1 {
		t.Errorf("%d processed objects for one upload", len(objs))
	}
	// One trace from the request through the Pub/Sub emulator's push to the steps.
	var request trace.TraceID
	processed := map[trace.TraceID]bool{}
	for _, s := range c.spans.GetSpans() {
		switch s.Name {
		case "POST /v1/images:analyze":
			request = s.SpanContext.TraceID()
		case "act":
			processed[s.SpanContext.TraceID()] = true
		}
	}
	if !request.IsValid() || !processed[request] {
		t.Errorf("the push path's steps are not in the sync request's trace %s (act spans in %v)", request, processed)
	}
}

// The same notification delivered three times, two of them at once: one processed
// object, one record, one event.
func TestDuplicateNotifications(t *testing.T) {
	c := newChain(t, "e2e-dup", 0)
	gen := c.upload(t, "photos/grace.jpg", "grace_hopper.jpg") // delivery 1, through the fake's notification
	key := pipeline.ObjectKey(c.env.Names.IncomingBucket, "photos/grace.jpg", gen)
	attrs := map[string]string{"eventType": "OBJECT_FINALIZE", "bucketId": c.env.Names.IncomingBucket,
		"objectId": "photos/grace.jpg", "objectGeneration": strconv.FormatInt(gen, 10), "payloadFormat": "JSON_API_V1"}
	topic := "projects/" + c.cfg.GCP.Project + "/topics/" + c.env.Names.UploadedTopic
	var wg sync.WaitGroup
	for range 2 { // deliveries 2 and 3, concurrently
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.env.Queue.Publish(context.Background(), topic, []byte(`{}`), attrs); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c.waitJob(t, key, 60*time.Second)
	time.Sleep(3 * time.Second) // let every duplicate be delivered and answered
	objs := processedObjects(t, c)
	all, err := c.env.Meta.List(context.Background(), meta.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var jobs []meta.Job // the emulator's database is shared by this package's tests
	for _, j := range all {
		if j.Source.Bucket == c.env.Names.IncomingBucket {
			jobs = append(jobs, j)
		}
	}
	events := pull(t, c.processed, 3*time.Second)
	if len(objs) != 1 || len(jobs) != 1 || len(events) != 1 || c.model.calls.Load() != 1 {
		t.Fatalf("%d processed objects, %d records, %d events, %d model calls; want 1 each", len(objs), len(jobs), len(events), c.model.calls.Load())
	}
}

// A model answering 503 twice: Pub/Sub redelivers and the job completes.
func TestTransientModelFailuresRetried(t *testing.T) {
	c := newChain(t, "e2e-retry", 2)
	gen := c.upload(t, "photos/grace.jpg", "grace_hopper.jpg")
	j := c.waitJob(t, pipeline.ObjectKey(c.env.Names.IncomingBucket, "photos/grace.jpg", gen), 90*time.Second)
	if j.State != meta.StateDone || j.Attempts != 3 {
		t.Fatalf("job after two 503s: state %s, attempts %d", j.State, j.Attempts)
	}
}

// A model that always fails: after maxAttempts the notification is in the dead-letter
// topic, and nothing was half-written: no processed object, no final record.
func TestAlwaysFailingModelDeadLetters(t *testing.T) {
	c := newChain(t, "e2e-dead", -1)
	gen := c.upload(t, "photos/grace.jpg", "grace_hopper.jpg")
	var dead []*ps.Message
	deadline := time.Now().Add(120 * time.Second)
	for len(dead) == 0 && time.Now().Before(deadline) {
		dead = pull(t, c.psc.Subscriber(c.dead), 3*time.Second)
	}
	if len(dead) != 1 || dead[0].Attributes["objectId"] != "photos/grace.jpg" {
		t.Fatalf("dead-letter topic holds %d messages: %v", len(dead), dead)
	}
	if n := c.model.calls.Load(); n != 5 {
		t.Errorf("model called %d times before dead-lettering, want 5 (maxAttempts)", n)
	}
	// Every failed delivery is counted. Google's emulator leaves deliveryAttempt out of
	// its push envelopes (Pub/Sub sets it with a dead-letter policy), so the last one
	// cannot be told apart here: all five count as retried. The server's tests count
	// the last attempt of an envelope that carries it as dead_lettered.
	jobs := c.metric(t, "visionstack_jobs_total")
	for _, want := range []string{`visionstack_jobs_total{outcome="retried",project="e2e-dead"} 5`} {
		if !strings.Contains(jobs, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, jobs)
		}
	}
	if objs := processedObjects(t, c); len(objs) != 0 {
		t.Fatalf("half-written: %d processed objects", len(objs))
	}
	j, err := c.env.Meta.Get(context.Background(), pipeline.ObjectKey(c.env.Names.IncomingBucket, "photos/grace.jpg", gen))
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatal(err)
	}
	if j.State.Final() {
		t.Fatalf("a failed job was recorded final: %+v", j)
	}
}

var benchRuns atomic.Int32

// BenchmarkPushThroughput uploads batches of 8 photos to fake GCS and waits until the
// push path has recorded every one as done in the Firestore emulator: images per
// second through notification → Pub/Sub emulator push → server → steps → records.
func BenchmarkPushThroughput(b *testing.B) {
	c := newChain(b, fmt.Sprintf("bench-push-%d", benchRuns.Add(1)), 0) // the harness calls it more than once
	const batch = 8
	b.ResetTimer()
	for i := range b.N {
		var keys []string
		for k := range batch {
			obj := fmt.Sprintf("b%d/%d.jpg", i, k)
			gen := c.upload(b, obj, "grace_hopper.jpg")
			keys = append(keys, pipeline.ObjectKey(c.env.Names.IncomingBucket, obj, gen))
		}
		for _, k := range keys {
			if j := c.waitJob(b, k, 120*time.Second); j.State != meta.StateDone {
				b.Fatalf("%s: %s", k, j.State)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*batch), "ms/image")
}

// BenchmarkPushPeerSampleMethod compares the push path on the emulators (upload →
// notification → push → the whole job) with the method of Google's Cloud Run sample
// (`convert - -blur 0x8 -` per image) on issue 13's 8 photos, two at a time: the
// Pub/Sub emulator pushes two requests at once.
func BenchmarkPushPeerSampleMethod(b *testing.B) {
	set := peer.SetFor(b)
	c := newChain(b, fmt.Sprintf("bench-peer-%d", benchRuns.Add(1)), 0)
	peer.Compare(b, set, func(it int) (time.Duration, error) {
		start := time.Now()
		var keys []string
		for i, data := range set {
			obj := fmt.Sprintf("peer%d/%d.jpg", it, i)
			keys = append(keys, pipeline.ObjectKey(c.env.Names.IncomingBucket, obj, c.uploadBytes(b, obj, data)))
		}
		for _, k := range keys {
			if j := c.waitJob(b, k, 300*time.Second); j.State != meta.StateDone {
				return 0, fmt.Errorf("%s: %s %s", k, j.State, j.Reason)
			}
		}
		return time.Since(start), nil
	})
}

// shadowModel answers with one face in the top-left corner, as version canary-2.
type shadowModel struct{ calls atomic.Int32 }

func (m *shadowModel) Predict(_ context.Context, in []model.Instance, _ model.Parameters) ([]model.Prediction, error) {
	m.calls.Add(1)
	out := make([]model.Prediction, len(in))
	for i := range out {
		out[i] = model.Prediction{IDs: []string{"0"}, DisplayNames: []string{"face"}, Confidences: []float64{0.9},
			BBoxes: [][4]float64{{0, 0.2, 0, 0.2}}, Version: "canary-2"}
	}
	return out, nil
}

// Shadow mode on the emulators: the shadow model answers every image, its result is
// stored beside the stable one in Firestore, and the output is byte for byte what the
// same photo gives without a shadow (its corner box is not anonymized); the processed
// event does not carry it.
func TestShadowOnEmulators(t *testing.T) {
	const shadowRef = "kserve:http://canary.invalid/v2/models/faces"
	stable := newChain(t, "e2e-noshadow", 0)
	gen := stable.upload(t, "photos/grace.jpg", "grace_hopper.jpg")
	want := stable.waitJob(t, pipeline.ObjectKey(stable.env.Names.IncomingBucket, "photos/grace.jpg", gen), 60*time.Second)

	sm := &shadowModel{}
	c := newChainWith(t, "e2e-shadow", 0, func(y []byte) []byte {
		return bytes.Replace(y, []byte(`mode: sync, minConfidence: 0.5}`), []byte(`mode: sync, minConfidence: 0.5, shadow: "`+shadowRef+`"}`), 1)
	}, map[string]model.Predictor{shadowRef: sm})
	gen = c.upload(t, "photos/grace.jpg", "grace_hopper.jpg")
	j := c.waitJob(t, pipeline.ObjectKey(c.env.Names.IncomingBucket, "photos/grace.jpg", gen), 60*time.Second)
	if j.State != meta.StateDone || len(j.Results) != 1 {
		t.Fatalf("job %+v", j)
	}
	r := j.Results[0]
	if r.Shadow == nil || r.Shadow.ModelVersion != "canary-2" || r.Shadow.Model != shadowRef || len(r.Shadow.Detections) != 1 {
		t.Fatalf("stored shadow result %+v, want canary-2's corner face", r.Shadow)
	}
	if len(r.Detections) != len(want.Results[0].Detections) || r.ModelVersion != want.Results[0].ModelVersion {
		t.Errorf("stable result %+v, want what the chain without a shadow recorded: %+v", r, want.Results[0])
	}
	if sm.calls.Load() == 0 {
		t.Error("the shadow model was never called")
	}
	read := func(c *chain) []byte {
		rd, _, err := c.env.Processed.NewReader(context.Background(), "photos/grace.jpg")
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		b, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(c), read(stable)) {
		t.Error("the output with a shadow differs from the output without one: the shadow's answer was acted on")
	}
	events := pull(t, c.processed, 3*time.Second)
	if len(events) == 0 || bytes.Contains(events[0].Data, []byte("canary-2")) {
		t.Errorf("processed events %d; the shadow's answer must not leave the service: %s", len(events), events[0].Data)
	}
}

// Issue 25: an onnx: analysis in the cloud: the model file read from the stack's
// model bucket (here a fake one) at the generation and sha256 the stack pinned
// (VISIONSTACK_ONNX_PINS), then a push processed through it with its detections
// recorded and its labels acted on.
func TestONNXAnalysisFromTheModelBucket(t *testing.T) {
	ctx := context.Background()
	file, err := os.ReadFile("../../projects/defects/model/defects.onnx")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	hexSum := hex.EncodeToString(sum[:])
	bucket, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1", Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Stop()
	bucket.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "acme-models", VersioningEnabled: true})
	object := "onnx/" + hexSum + "/defects.onnx"
	w := bucket.Client().Bucket("acme-models").Object(object).NewWriter(ctx)
	if _, err := w.Write(file); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", bucket.URL())
	edit := func(raw []byte) []byte {
		return bytes.Replace(raw, []byte(`    - {name: faces, model: "builtin:faces", mode: sync, minConfidence: 0.5}`),
			[]byte(`    - {name: faces, model: "builtin:faces", mode: sync, minConfidence: 0.5}
    - {name: defects, model: "onnx:model/defects.onnx", mode: async, minConfidence: 0.5}`), 1)
	}
	raw, err := os.ReadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("p.yaml", edit(raw))
	if err != nil {
		t.Fatal(err)
	}
	// The pin says where `up` put the file; the project directory has none.
	cfg.Dir = t.TempDir()
	pin := func(sha string) string {
		return fmt.Sprintf(`{"model/defects.onnx": {"uri": "gs://acme-models/%s", "generation": %d, "sha256": %q}}`, object, w.Attrs().Generation, sha)
	}
	t.Setenv(models.PinsEnv, pin(hexSum))
	built, closeModels, err := models.Build(ctx, cfg, models.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeModels()
	onnxModel := built["onnx:model/defects.onnx"]

	// A pin whose sha256 is not the file's is refused: a file changed behind the stack.
	t.Setenv(models.PinsEnv, pin(strings.Repeat("0", 64)))
	if _, _, err := models.Build(ctx, cfg, models.Options{}); err == nil || !strings.Contains(err.Error(), "changed outside the stack") {
		t.Fatalf("a wrong pin: %v", err)
	}

	c := newChainWith(t, "e2e-onnx", 0, edit, map[string]model.Predictor{"onnx:model/defects.onnx": onnxModel})
	img, err := os.ReadFile("../../projects/defects/eval/000.png")
	if err != nil {
		t.Fatal(err)
	}
	gen := c.uploadBytes(t, "line/000.png", img)
	j := c.waitJob(t, pipeline.ObjectKey(c.env.Names.IncomingBucket, "line/000.png", gen), 60*time.Second)
	var defects *meta.Result
	for i := range j.Results {
		if j.Results[i].Analysis == "defects" {
			defects = &j.Results[i]
		}
	}
	if j.State != meta.StateDone || defects == nil || len(defects.Detections) == 0 || !strings.HasPrefix(defects.ModelVersion, "onnx:defects.onnx@"+hexSum[:12]) {
		t.Fatalf("job %s %s: %+v", j.State, j.Reason, defects)
	}
}
