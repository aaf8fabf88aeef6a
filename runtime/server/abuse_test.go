package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// Hostile push bodies: each is refused with a 4xx (or acked without work), none
// reaches the pipeline, and the service keeps working afterwards.
func TestPushAbuse(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	huge := strings.Repeat("A", 2<<20)
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	for _, c := range []struct {
		name string
		body string
		code int
	}{
		{"empty body", "", 400},
		{"json null", "null", 400},
		{"an array", "[]", 400},
		{"oversized envelope", `{"message":{"data":"` + huge + `"}}`, 413},
		{"deeply nested", `{"message":` + deep + `}`, 400},
		{"data not base64", `{"message":{"data":"***"}}`, 400},
		{"attributes not strings", `{"message":{"attributes":{"eventType":1}}}`, 400},
		{"generation overflows", string(pushEnvelope(nil, map[string]string{"eventType": "OBJECT_FINALIZE", "bucketId": "incoming", "objectId": "a.jpg", "objectGeneration": "99999999999999999999999"}, 1)), 400},
		{"object with NUL", string(pushEnvelope(nil, notification("a\x00.jpg", 1), 1)), 400},
		{"absolute object", string(pushEnvelope(nil, notification("/etc/passwd", 1), 1)), 400},
		{"task on another bucket", string(pushEnvelope([]byte(`{"key":"other/a.jpg#1","source":{"bucket":"other","object":"a.jpg","generation":1}}`), nil, 1)), 400},
		{"task escaping the bucket", string(pushEnvelope([]byte(`{"key":"incoming/../a.jpg#1","source":{"bucket":"incoming","object":"../a.jpg","generation":1}}`), nil, 1)), 400},
		{"task with a made-up key", string(pushEnvelope([]byte(`{"key":"x","source":{"bucket":"incoming","object":"a.jpg","generation":1}}`), nil, 1)), 400},
		{"content key on a user object", string(pushEnvelope([]byte(`{"key":"sha256:`+strings.Repeat("a", 64)+`","source":{"bucket":"incoming","object":"a.jpg","generation":1}}`), nil, 1)), 400},
		{"negative attempt, unknown event", `{"message":{"attributes":{"eventType":"OBJECT_METADATA_UPDATE"}},"deliveryAttempt":-5}`, 204},
	} {
		resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", []byte(c.body))
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %.200s, want %d", c.name, resp.StatusCode, body, c.code)
		}
	}
	if jobs, _ := f.env.Meta.List(ctx, meta.Filter{}); len(jobs) != 0 {
		t.Fatalf("hostile envelopes created %d jobs: %+v", len(jobs), jobs)
	}
	if n := f.model.calls.Load(); n != 0 {
		t.Fatalf("hostile envelopes reached the model %d times", n)
	}
	// Still serving.
	a, _ := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	if resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification("up/grace.jpg", a.Generation), 1)); resp.StatusCode != 204 {
		t.Fatalf("a genuine delivery after the abuse: %d %s", resp.StatusCode, body)
	}
}

// Review URLs for every kind of job — done, quarantined, still processing, unknown —
// and every kind of request: nothing is decoded that should not be, nothing raw
// leaves a page others may reach, and no answer is a 5xx.
func TestReviewAbuse(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{review: true})
	ctx := context.Background()
	a, _ := f.env.Incoming.Put(ctx, "up/grace.jpg", photo(t, "grace_hopper.jpg"), blob.PutOptions{})
	b, _ := f.env.Incoming.Put(ctx, "up/bad.jpg", []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), blob.PutOptions{})
	for _, n := range []struct {
		obj string
		gen int64
	}{{"up/grace.jpg", a.Generation}, {"up/bad.jpg", b.Generation}} {
		post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(n.obj, n.gen), 1))
	}
	done, quarantined := pipeline.ObjectKey("incoming", "up/grace.jpg", a.Generation), pipeline.ObjectKey("incoming", "up/bad.jpg", b.Generation)
	processing := pipeline.ObjectKey("incoming", "up/grace.jpg", a.Generation+1)
	if _, err := f.env.Meta.Claim(ctx, processing, meta.Source{Bucket: "incoming", Object: "up/grace.jpg", Generation: a.Generation + 1}, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	get := func(v url.Values) (int, string, []byte) {
		resp, err := http.Get(f.http.URL + "/review/image?" + v.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), buf.Bytes()
	}
	for _, c := range []struct {
		name string
		v    url.Values
		code int
	}{
		{"done original raw (not loopback-only)", url.Values{"key": {done}, "kind": {"original"}}, 403},
		{"done original download", url.Values{"key": {done}, "kind": {"original"}, "download": {"1"}}, 403},
		{"done original preview", url.Values{"key": {done}, "kind": {"original"}, "w": {"64"}}, 200},
		{"done processed", url.Values{"key": {done}, "kind": {"processed"}}, 200},
		{"preview too large", url.Values{"key": {done}, "kind": {"processed"}, "w": {"100000"}}, 400},
		{"preview not a number", url.Values{"key": {done}, "kind": {"processed"}, "w": {"1e9"}}, 400},
		{"quarantined preview", url.Values{"key": {quarantined}, "kind": {"original"}, "w": {"64"}}, 403},
		{"quarantined raw", url.Values{"key": {quarantined}, "kind": {"original"}}, 403},
		{"quarantined processed", url.Values{"key": {quarantined}, "kind": {"processed"}}, 404},
		{"processing original preview", url.Values{"key": {processing}, "kind": {"original"}, "w": {"64"}}, 200},
		{"processing processed", url.Values{"key": {processing}, "kind": {"processed"}}, 404},
		{"unknown key", url.Values{"key": {"incoming/../../etc/passwd#1"}, "kind": {"original"}, "w": {"64"}}, 404},
		{"bad kind", url.Values{"key": {done}, "kind": {"../etc/passwd"}}, 400},
		{"no key", url.Values{}, 404},
	} {
		code, ct, body := get(c.v)
		if code != c.code {
			t.Errorf("%s: %d %s %.100s, want %d", c.name, code, ct, body, c.code)
		}
		if code == 200 && ct != "image/jpeg" {
			t.Errorf("%s: served as %q", c.name, ct)
		}
	}
}

// Issue 24 #6: an object name of 1021 to 1024 bytes (Cloud Storage allows 1024) has
// no room for ".jpg": its output name is shortened to fit, with a digest of the whole
// name, and the photo is processed, not retried until it is dead-lettered.
func TestLongestObjectNamesAreProcessed(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	for _, n := range []int{1021, 1024} {
		// Folders of 200 bytes: a local bucket keeps each part a file name.
		var name string
		for len(name)+201 < n-10 {
			name += strings.Repeat("d", 200) + "/"
		}
		name += strings.Repeat("é", (n-len(name)-4)/2) // two bytes each: the cut must not split one
		name += strings.Repeat("x", n-len(name)-4) + ".png"
		if len(name) != n {
			t.Fatalf("name of %d bytes, want %d", len(name), n)
		}
		a, err := f.env.Incoming.Put(ctx, name, testimg.PNG(64, 48), blob.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := post(t, f.http.URL+"/v1/pubsub/push", "application/json", pushEnvelope(nil, notification(name, a.Generation), 1)); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d-byte name: %d %s, want 204", n, resp.StatusCode, body)
		}
		j, err := f.env.Meta.Get(ctx, pipeline.ObjectKey("incoming", name, a.Generation))
		if err != nil || j.State != meta.StateDone || len(j.Outputs) != 1 {
			t.Fatalf("%d-byte name: job %+v, %v", n, j, err)
		}
		if out := j.Outputs[0].Object; len(out) > blob.MaxNameBytes || !utf8.ValidString(out) || !strings.HasSuffix(out, ".jpg") {
			t.Errorf("%d-byte name: output %q (%d bytes)", n, out, len(out))
		}
	}
}
