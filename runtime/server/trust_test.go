package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/server"
)

// syncThenQueued sends a photo through the sync API and returns its answer and the
// task it queued.
func syncThenQueued(t *testing.T, f *fixture, img []byte) (server.AnalyzeResponse, pipeline.Task, map[string]string) {
	t.Helper()
	resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", img)
	if resp.StatusCode != 200 {
		t.Fatalf("analyze: %d %s", resp.StatusCode, body)
	}
	var ar server.AnalyzeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	msgs, err := f.env.Queue.Messages(context.Background(), localmode.WorkTopic)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("queued tasks: %d, %v", len(msgs), err)
	}
	var task pipeline.Task
	if err := json.Unmarshal(msgs[0].Data, &task); err != nil {
		t.Fatal(err)
	}
	return ar, task, msgs[0].Attributes
}

// forge posts a task the service did not write, as an unauthenticated caller could.
func forge(t *testing.T, f *fixture, task any) (int, string) {
	t.Helper()
	data, _ := json.Marshal(task)
	resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(data, map[string]string{"key": "x"}, 1))
	return resp.StatusCode, string(body)
}

// The attack: after an anonymized output is stored, a task naming the same
// source object under another key, claiming "no faces", must not replace it.
func TestForgedTaskCannotReplaceAnonymizedOutput(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	ar, task, attrs := syncThenQueued(t, f, photo(t, "grace_hopper.jpg"))
	data, _ := json.Marshal(task)
	if resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(data, attrs, 1)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("genuine task: %d %s", resp.StatusCode, body)
	}
	before, err := f.env.Meta.Get(ctx, ar.Key)
	if err != nil || before.State != meta.StateDone || len(before.Outputs) != 1 {
		t.Fatalf("genuine job: %+v %v", before, err)
	}
	out := before.Outputs[0]
	original, _, _ := blob.ReadAll(ctx, f.env.Processed, out.Object, 0)

	noFaces := []map[string]any{{"analysis": "faces", "model": "builtin:faces", "detections": []any{}}}
	for name, forged := range map[string]map[string]any{
		"another content key": {"key": "sha256:" + strings.Repeat("0", 64), "source": task.Source, "done": noFaces},
		"an object key for the sync object": {"key": pipeline.ObjectKey(task.Source.Bucket, task.Source.Object, task.Source.Generation+1),
			"source": task.Source, "done": noFaces},
		"a key that is not a key": {"key": "mine", "source": task.Source, "done": noFaces},
		"another bucket":          {"key": pipeline.ObjectKey("elsewhere", "a.jpg", 1), "source": meta.Source{Bucket: "elsewhere", Object: "a.jpg", Generation: 1}},
	} {
		code, body := forge(t, f, forged)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
	}
	after, _, _ := blob.ReadAll(ctx, f.env.Processed, out.Object, 0)
	if !bytes.Equal(original, after) {
		t.Fatal("a forged task replaced the anonymized output")
	}
	if objs, _ := f.env.Processed.List(ctx, blob.Query{}); len(objs) != 1 {
		t.Fatalf("%d outputs after forged tasks, want the 1 genuine one", len(objs))
	}
	if jobs, _ := f.env.Meta.List(ctx, meta.Filter{}); len(jobs) != 1 {
		t.Fatalf("forged tasks left %d job records, want 1: %+v", len(jobs), jobs)
	}
}

// A forged task that races the genuine one, with the right key and "no faces" in its
// done list: the results it carries are never used, so the output is still blurred.
func TestForgedDoneResultsAreIgnored(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	ar, task, _ := syncThenQueued(t, f, photo(t, "grace_hopper.jpg"))
	forged := map[string]any{"key": task.Key, "source": task.Source,
		"done": []map[string]any{{"analysis": "faces", "model": "builtin:faces", "detections": []any{}}}}
	if code, body := forge(t, f, forged); code != http.StatusNoContent {
		t.Fatalf("forged task with the genuine key: %d %s", code, body)
	}
	j, err := f.env.Meta.Get(ctx, ar.Key)
	if err != nil || j.State != meta.StateDone {
		t.Fatalf("job: %+v %v", j, err)
	}
	if len(j.Results) != 1 || len(j.Results[0].Detections) == 0 {
		t.Fatalf("the job recorded the forged results %+v; want the faces the sync API found", j.Results)
	}
	if n := f.model.calls.Load(); n != 1 {
		t.Errorf("model called %d times; the push path must reuse what the sync API itself recorded", n)
	}
}

// A user's upload under sync/ is processed like any other; only what the sync API
// stored (recognised by its metadata) is left to the task the API queued.
func TestSyncOriginalsRecognisedByMetadataNotName(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	a, err := f.env.Incoming.Put(ctx, "sync/user.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"kind": "storage#object", "name": "sync/user.jpg"})
	resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(payload, notification("sync/user.jpg", a.Generation), 1))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("user upload under sync/: %d %s", resp.StatusCode, body)
	}
	if j, err := f.env.Meta.Get(ctx, pipeline.ObjectKey("incoming", "sync/user.jpg", a.Generation)); err != nil || j.State != meta.StateDone {
		t.Fatalf("a user's upload under sync/ was not processed: %+v %v", j, err)
	}

	ar, task, _ := syncThenQueued(t, f, photo(t, "faceapi_sample1.jpg"))
	attrs, err := f.env.Incoming.Attrs(ctx, task.Source.Object)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ = json.Marshal(map[string]any{"kind": "storage#object", "name": task.Source.Object, "metadata": attrs.Metadata})
	resp, body = post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(payload, notification(task.Source.Object, attrs.Generation), 1))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the sync API's own original: %d %s", resp.StatusCode, body)
	}
	if _, err := f.env.Meta.Get(ctx, pipeline.ObjectKey("incoming", task.Source.Object, attrs.Generation)); err == nil {
		t.Fatal("the sync API's original was processed a second time under its object key")
	}
	if j, _ := f.env.Meta.Get(ctx, ar.Key); j.State.Final() {
		t.Fatalf("the notification processed the sync job itself: %+v", j)
	}
}

// Issue 24 #1: bytes planted under a content key (incoming/sync/<sha256 of a grey
// image>.png holds a face photo) are never processed as the grey image's: the sync
// hand-off replaces them with the bytes it analysed, and a task whose object does not
// hash to its key is quarantined, not done with the face unblurred.
func TestPlantedBytesUnderAContentKey(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	grey, face := testimg.PNG(64, 48), photo(t, "grace_hopper.jpg")
	key := pipeline.ContentKey(grey)
	name := pipeline.SyncObject(key, "png")
	if _, err := f.env.Incoming.Put(ctx, name, face, blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	ar, task, attrs := syncThenQueued(t, f, grey)
	if ar.Key != key {
		t.Fatalf("key %s, want %s", ar.Key, key)
	}
	held, _, err := blob.ReadAll(ctx, f.env.Incoming, name, 0)
	if err != nil || !bytes.Equal(held, grey) {
		t.Fatalf("after the sync call %s holds %d bytes (grey is %d): the planted photo stayed", name, len(held), len(grey))
	}
	// Planted again after the hand-off, before the task runs.
	if _, err := f.env.Incoming.Put(ctx, name, face, blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(task)
	if resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(data, attrs, 1)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	j, err := f.env.Meta.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != meta.StateQuarantined || !strings.Contains(j.Reason, "does not match its key") || len(j.Outputs) != 0 {
		t.Fatalf("job %s (%s), outputs %v: want quarantined, nothing stored", j.State, j.Reason, j.Outputs)
	}
}

// Issue 28 #6: the API answers JSON to a wrong method or path (README promised JSON
// errors; a GET got plain-text "Method Not Allowed"), and an answer's boxes and
// confidences carry 4 decimals, not 16.
func TestAPIAnswersJSONAndRoundedBoxes(t *testing.T) {
	f := newFixture(t, 0)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/v1/images:analyze", 405}, {"PUT", "/v1/pubsub/push", 405}, {"POST", "/v1/images:classify", 404},
	} {
		req, _ := http.NewRequest(c.method, f.http.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.code || err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s, %v; want %d JSON", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), err, c.code)
		}
	}
	resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg"))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var ar server.AnalyzeResponse
	if err := json.Unmarshal(body, &ar); err != nil || len(ar.Results) == 0 || len(ar.Results[0].Detections) == 0 {
		t.Fatalf("%s %v", body, err)
	}
	for _, d := range ar.Results[0].Detections {
		for _, v := range []float64{d.Confidence, d.Box.XMin, d.Box.XMax, d.Box.YMin, d.Box.YMax} {
			if v != math.Round(v*1e4)/1e4 {
				t.Errorf("%v has more than 4 decimals: %s", v, body)
			}
		}
	}
}

// docs/usage.md's example answer is what the service answers for that photo today
// (it said 0.9959 and a box to 0.738 long after the model changed).
func TestDocsExampleAnswerIsCurrent(t *testing.T) {
	doc, err := os.ReadFile("../../docs/usage.md")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 0)
	resp, body := post(t, f.http.URL+"/v1/images:analyze", "image/jpeg", photo(t, "grace_hopper.jpg"))
	var ar server.AnalyzeResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &ar) != nil || len(ar.Results) == 0 || len(ar.Results[0].Detections) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	d := ar.Results[0].Detections[0]
	box, _ := json.Marshal(d.Box)
	for _, want := range []string{fmt.Sprintf(`"confidence":%v`, d.Confidence), string(box), `"modelVersion":"` + ar.Results[0].ModelVersion + `"`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/usage.md's example answer lacks %s (the answer today: %s)", want, body)
		}
	}
}
