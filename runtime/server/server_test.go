package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/racetest"
	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/review"
	"github.com/visionstack/visionstack/runtime/server"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/testdata/photos"
)

// countingModel wraps the built-in model, counting calls and failing the first ones.
type countingModel struct {
	inner    model.Predictor
	calls    atomic.Int32
	failures int32
}

func (m *countingModel) Predict(ctx context.Context, in []model.Instance, p model.Parameters) ([]model.Prediction, error) {
	if n := m.calls.Add(1); m.failures < 0 || n <= m.failures { // < 0: always
		return nil, fmt.Errorf("%w: 503 from the model", model.ErrTransient)
	}
	return m.inner.Predict(ctx, in, p)
}

type fixture struct {
	env   *localmode.Env
	srv   *server.Server
	http  *httptest.Server
	model *countingModel
	adm   *server.Admission
}

func newFixture(t *testing.T, failures int32) *fixture {
	return newFixtureWith(t, fixtureOptions{failures: failures})
}

// fixtureOptions vary the service under test.
type fixtureOptions struct {
	failures  int32                      // model calls that fail first (503); -1: all
	model     model.Predictor            // instead of the built-in model
	project   func(*config.Project)      // edits the demo project
	telemetry *telemetry.Telemetry       // metrics and spans (and /metrics)
	logs      io.Writer                  // JSON logs go here (default: the test's output, text)
	review    bool                       // serve the review page
	models    map[string]model.Predictor // more model clients, by reference
}

func newFixtureWith(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	if o.project != nil {
		o.project(cfg)
		cfg.ApplyDefaults()
		if probs := cfg.Validate(); len(probs) > 0 {
			t.Fatal(probs)
		}
	}
	inner := o.model
	if inner == nil {
		if inner, err = builtin.New(builtin.DefaultParams); err != nil {
			t.Fatal(err)
		}
	}
	m := &countingModel{inner: inner, failures: o.failures}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	if o.logs != nil {
		log = telemetry.NewLogger(o.logs, "json", "test-project", slog.LevelInfo)
	}
	adm := server.NewAdmission(200_000_000, 50*time.Millisecond)
	models := map[string]model.Predictor{"builtin:faces": m}
	for ref, p := range o.models {
		models[ref] = p
	}
	env, err := localmode.Open(cfg, t.TempDir(), localmode.Options{Logger: log, Admit: adm.Admit,
		Models: models, Telemetry: o.telemetry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	p := env.Pipeline
	so := server.Options{Pipeline: p, Incoming: env.Incoming, Publisher: env.Queue, WorkTopic: localmode.WorkTopic,
		Admission: adm, MaxBody: int64(cfg.Pipeline.Prepare.MaxBytes), Logger: log}
	if o.telemetry != nil {
		so.Metrics = o.telemetry.MetricsHandler()
	}
	if o.review {
		so.Review = review.New(review.Options{Project: cfg, Meta: env.Meta, Buckets: []blob.Bucket{env.Incoming, env.Processed, env.Quarantine}})
	}
	srv := server.New(so)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &fixture{env: env, srv: srv, http: hs, model: m, adm: adm}
}

func photo(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url, ctype string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

// pushEnvelope wraps a message the way a Pub/Sub push subscription does.
func pushEnvelope(data []byte, attrs map[string]string, attempt int) []byte {
	env := map[string]any{
		"message":         map[string]any{"data": data, "attributes": attrs, "messageId": "m1", "publishTime": time.Now().UTC()},
		"subscription":    "projects/p/subscriptions/demo-push",
		"deliveryAttempt": attempt,
	}
	b, _ := json.Marshal(env)
	return b
}

// The sync path answers with face boxes, then its queued remainder completes through
// the push endpoint without calling the model again.
func TestSyncAnalyzeThenAsyncRemainder(t *testing.T) {
	f := newFixture(t, 0)
	resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg"))
	if resp.StatusCode != 200 {
		t.Fatalf("analyze: %d %s", resp.StatusCode, body)
	}
	var ar server.AnalyzeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	if len(ar.Results) != 1 || ar.Results[0].Analysis != "faces" || len(ar.Results[0].Detections) == 0 || !ar.Queued {
		t.Fatalf("analyze answer: %s", body)
	}
	if d := ar.Results[0].Detections[0]; d.Box == nil || d.Box.XMax <= d.Box.XMin || d.Confidence < 0.5 {
		t.Fatalf("face box: %+v", d)
	}
	msgs, err := f.env.Queue.Messages(context.Background(), localmode.WorkTopic)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("queued tasks: %d, %v", len(msgs), err)
	}
	resp, body = post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(msgs[0].Data, msgs[0].Attributes, 1))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	j, err := f.env.Meta.Get(context.Background(), ar.Key)
	if err != nil || j.State != meta.StateDone || len(j.Outputs) != 1 {
		t.Fatalf("job after push: %+v %v", j, err)
	}
	if len(j.Results) != 1 || j.Results[0].ModelVersion != builtin.Version || ar.Results[0].ModelVersion != builtin.Version {
		t.Errorf("results do not say which model version produced them: job %+v, sync answer %+v", j.Results, ar.Results)
	}
	if n := f.model.calls.Load(); n != 1 {
		t.Errorf("model called %d times; the push path must reuse the sync result", n)
	}
}

func TestSyncAcceptsMultipart(t *testing.T) {
	f := newFixture(t, 0)
	postForm(t, f, "grace.jpg")
	// Two images in one form: refused, not one of them answered as if it were all.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("note", "a text field is not an image")
	for _, name := range []string{"a.jpg", "b.jpg"} {
		fw, _ := mw.CreateFormFile("image", name)
		_, _ = fw.Write(photo(t, "grace_hopper.jpg"))
	}
	mw.Close()
	resp, body := post(t, f.http.URL+"/v1/images:analyze", mw.FormDataContentType(), buf.Bytes())
	if resp.StatusCode != 400 || !strings.Contains(string(body), `second file (\"b.jpg\"): send one image a request`) {
		t.Fatalf("two images: %d %s, want 400 naming the second", resp.StatusCode, body)
	}
}

func TestSyncRejectsBadInput(t *testing.T) {
	f := newFixture(t, 0)
	for _, c := range []struct {
		name string
		body []byte
		code int
		msg  string
	}{
		{"bomb", testimg.PNGBomb(50000, 50000), 422, "50000x50000"},
		{"empty", nil, 422, "empty file"},
		{"text", []byte("hello"), 422, "not a readable image"},
		{"too large", make([]byte, 21<<20), 413, "larger than"},
	} {
		resp, body := post(t, f.http.URL+"/v1/images:analyze", "application/octet-stream", c.body)
		if resp.StatusCode != c.code || !bytes.Contains(body, []byte(c.msg)) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, resp.StatusCode, body, c.code, c.msg)
		}
	}
}

func notification(obj string, gen int64) map[string]string {
	return map[string]string{"eventType": "OBJECT_FINALIZE", "bucketId": "incoming", "objectId": obj,
		"objectGeneration": strconv.FormatInt(gen, 10), "payloadFormat": "JSON_API_V1"}
}

// The same notification three times, two at once: one output, one record, and every
// delivery eventually acked.
func TestPushDuplicatesHaveOneEffect(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	a, err := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := pushEnvelope([]byte(`{"kind":"storage#object"}`), notification("up/grace.jpg", a.Generation), 1)
	codes := make([]int, 2)
	racetest.Winners(2, func(i int) error {
		resp, _ := post(t, f.http.URL+"/v1/pubsub/push", "application/json", env)
		codes[i] = resp.StatusCode
		return nil
	})
	resp, _ := post(t, f.http.URL+"/v1/pubsub/push", "application/json", env)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("third delivery: %d", resp.StatusCode)
	}
	for _, c := range codes {
		if c != http.StatusNoContent && c != http.StatusConflict {
			t.Fatalf("concurrent deliveries answered %v; want 204 or 409 (retry)", codes)
		}
	}
	objs, _ := f.env.Processed.List(ctx, blob.Query{})
	jobs, _ := f.env.Meta.List(ctx, meta.Filter{})
	if len(objs) != 1 || len(jobs) != 1 || jobs[0].State != meta.StateDone || f.model.calls.Load() != 1 {
		t.Fatalf("%d outputs, %d records (%v), %d model calls; want 1, 1 done, 1", len(objs), len(jobs), jobs, f.model.calls.Load())
	}
}

// A model answering 503 makes the push answer 503 (Pub/Sub redelivers); the
// redelivery completes.
func TestPushTransientErrorIsRetried(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	a, _ := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	env := pushEnvelope(nil, notification("up/grace.jpg", a.Generation), 1)
	resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", env)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("first delivery: %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	resp, body = post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification("up/grace.jpg", a.Generation), 2))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("redelivery: %d %s", resp.StatusCode, body)
	}
}

func TestPushEdgeCases(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	a, _ := f.env.Incoming.Put(ctx, "up/bad.jpg", []byte("not an image"), blob.PutOptions{})
	cases := []struct {
		name string
		body []byte
		code int
	}{
		{"not an envelope", []byte("{"), 400},
		{"neither notification nor task", pushEnvelope([]byte("{}"), nil, 1), 400},
		{"delete event acked without work", pushEnvelope(nil, map[string]string{"eventType": "OBJECT_DELETE"}, 1), 204},
		{"folder placeholder acked", pushEnvelope(nil, notification("up/", 1), 1), 204},
		{"sync API's own original acked", pushEnvelope([]byte(`{"metadata":{"visionstack-origin":"sync-api"}}`), notification("sync/abc.jpeg", 1), 1), 204},
		{"other bucket", pushEnvelope(nil, map[string]string{"eventType": "OBJECT_FINALIZE", "bucketId": "elsewhere", "objectId": "a.jpg", "objectGeneration": "1"}, 1), 400},
		{"escaping name", pushEnvelope(nil, notification("../etc/passwd", 1), 1), 400},
		{"bad image is quarantined and acked", pushEnvelope(nil, notification("up/bad.jpg", a.Generation), 1), 204},
	}
	for _, c := range cases {
		resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", c.body)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.code)
		}
	}
	j, err := f.env.Meta.Get(ctx, pipeline.ObjectKey("incoming", "up/bad.jpg", a.Generation))
	if err != nil || j.State != meta.StateQuarantined {
		t.Fatalf("bad image: %+v %v", j, err)
	}
	// A malformed envelope is answered with what is wrong in JSON terms, not with the
	// Go struct it was read into (encoding/json's message spells out its fields).
	for body, want := range map[string]string{
		`{"message": 5}`:                   "message is a JSON number, not the object expected",
		`{"message": {"attributes": [1]}}`: "message.attributes is a JSON array, not the object expected",
		`{"message": {"data": true}}`:      "message.data is a JSON bool, not the array or base64 string expected",
	} {
		resp, raw := post(t, f.http.URL+"/v1/pubsub/push", "application/json", []byte(body))
		got := string(raw)
		if resp.StatusCode != 400 || !strings.Contains(got, want) || strings.Contains(got, "struct") {
			t.Errorf("%s: %d %s, want 400 saying %q", body, resp.StatusCode, got, want)
		}
	}
}

// With every pixel of the budget taken, a request is turned away with 429 and
// Retry-After instead of being decoded.
func TestAdmissionControl(t *testing.T) {
	f := newFixture(t, 0)
	release, err := f.adm.Admit(context.Background(), 200_000_000)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over budget: %d %s", resp.StatusCode, body)
	}
	release()
	if resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg")); resp.StatusCode != 200 {
		t.Fatalf("after release: %d %s", resp.StatusCode, body)
	}
	if f.adm.InFlight() != 0 {
		t.Fatalf("%d pixels still admitted after the requests", f.adm.InFlight())
	}
}

func TestAdmissionWaitsForRoom(t *testing.T) {
	a := server.NewAdmission(100, time.Second)
	r1, _ := a.Admit(context.Background(), 80)
	go func() { time.Sleep(50 * time.Millisecond); r1() }()
	r2, err := a.Admit(context.Background(), 80)
	if err != nil {
		t.Fatalf("second admission should wait for the first: %v", err)
	}
	r2()
	// An image larger than the whole budget runs alone rather than never.
	r3, err := a.Admit(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Admit(context.Background(), 1); !errors.Is(err, pipeline.ErrOverloaded) {
		t.Fatalf("budget full: %v", err)
	}
	r3()
}

func TestHealthAndDrain(t *testing.T) {
	f := newFixture(t, 0)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(f.http.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
	}
	f.srv.Drain()
	resp, _ := http.Get(f.http.URL + "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d", resp.StatusCode)
	}
}

// A push delivery that finds no room waits for it instead of answering 429: a 429
// would spend one of the subscription's attempts on a good image.
func TestPushWaitsForRoomInsteadOf429(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	a, _ := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	release, err := f.adm.Admit(ctx, 200_000_000)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(500 * time.Millisecond); release() }() // 10× the request wait
	resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification("up/grace.jpg", a.Generation), 1))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push while the budget was full: %d %s, want 204 once room was made", resp.StatusCode, body)
	}
	// The sync API still turns a client away quickly: it can come back.
	release, _ = f.adm.Admit(ctx, 200_000_000)
	defer release()
	if resp, _ := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sync request over budget: %d, want 429", resp.StatusCode)
	}
}

// rawRequest sends a request's headers and the first bytes of a body it promises to
// be much longer, then waits for an answer: a server that reads the body first never
// answers.
func rawRequest(t *testing.T, url, headers string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(headers + "\r\n\xff\xd8\xff")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "no answer: " + err.Error()
	}
	return line
}

// The sync API decides from the headers, before reading the body: a Content-Length
// over the cap is 413 and a full budget 429, at once.
func TestSyncDecidesBeforeReadingTheBody(t *testing.T) {
	f := newFixture(t, 0)
	req := "POST /v1/images:analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"
	if got := rawRequest(t, f.http.URL, fmt.Sprintf(req, 200<<20)); !strings.Contains(got, " 413 ") {
		t.Errorf("a 200 MiB Content-Length: %q, want 413 before the body is read", got)
	}
	release, err := f.adm.Admit(context.Background(), 200_000_000)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got := rawRequest(t, f.http.URL, fmt.Sprintf(req, 1<<20)); !strings.Contains(got, " 429 ") {
		t.Errorf("full budget: %q, want 429 before the body is read", got)
	}
}

// A sync upload keeps the file name its form gave (issue 28: uploads were named only
// by their hash): in the answer, on the stored original's metadata and in the job
// the push path records (the review page shows it), fit to show — its base name,
// without control characters.
func TestSyncUploadKeepsItsFileName(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{review: true})
	body := postForm(t, f, "../holiday/Grace at the desk.jpg")
	var ar server.AnalyzeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	const want = "Grace at the desk.jpg"
	if ar.Name != want {
		t.Errorf("answer names the upload %q, want %q", ar.Name, want)
	}
	ctx := context.Background()
	msgs, err := f.env.Queue.Messages(ctx, localmode.WorkTopic)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("queued tasks: %d, %v", len(msgs), err)
	}
	var task pipeline.Task
	if err := json.Unmarshal(msgs[0].Data, &task); err != nil {
		t.Fatal(err)
	}
	attrs, err := f.env.Incoming.Attrs(ctx, task.Source.Object)
	if err != nil || attrs.Metadata[pipeline.NameMetadata] != want {
		t.Errorf("stored original %s: metadata %v (%v), want %s=%q", task.Source.Object, attrs.Metadata, err, pipeline.NameMetadata, want)
	}
	resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(msgs[0].Data, msgs[0].Attributes, 1))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	j, err := f.env.Meta.Get(ctx, ar.Key)
	if err != nil || j.State != meta.StateDone || j.Name != want {
		t.Fatalf("job after push: name %q, state %s (%v); want %q", j.Name, j.State, err, want)
	}
	page, err := http.Get(f.http.URL + "/review")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(html), want) {
		t.Errorf("the review page does not show the upload's name %q", want)
	}
}

// postForm posts grace_hopper.jpg as the form file name to the sync API and returns
// the 200 answer's body.
func postForm(t *testing.T, f *fixture, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", name)
	_, _ = fw.Write(photo(t, "grace_hopper.jpg"))
	mw.Close()
	resp, body := post(t, f.http.URL+"/v1/images:analyze", mw.FormDataContentType(), buf.Bytes())
	if resp.StatusCode != 200 {
		t.Fatalf("multipart: %d %s", resp.StatusCode, body)
	}
	return body
}
