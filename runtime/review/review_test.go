package review_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	_ "image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/review"
	"github.com/visionstack/visionstack/testdata/photos"
)

// run processes the sample photos and two bad files locally, as `visionstack run`
// does, and serves the review page of the result.
type run struct {
	env  *localmode.Env
	srv  *httptest.Server
	jobs []meta.Job
}

func runSamples(t *testing.T) *run {
	t.Helper()
	imaging.Init(0)
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	// A drift baseline small enough for the samples, so the page shows the figures.
	cfg.Monitoring.Drift = &config.Drift{Analysis: "faces", Threshold: 0.2, Window: 10, BaselineImages: 10}
	cfg.ApplyDefaults()
	env, err := localmode.Open(cfg, t.TempDir(), localmode.Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	ctx := context.Background()
	ins, err := localmode.FindInputs([]string{photos.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	// Re-encoded copies: the same scenes as new images, so the drift window fills.
	copies := t.TempDir()
	for _, in := range ins {
		src, err := os.Open(in.Path)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := image.Decode(src)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(in.Path), filepath.Ext(in.Path)) + "-q80.jpg"
		if err := os.WriteFile(filepath.Join(copies, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, localmode.Input{Path: filepath.Join(copies, name), Object: "copies/" + name})
	}
	bad := t.TempDir()
	for name, data := range map[string][]byte{"bomb.png": testimg.PNGBomb(50000, 50000), "notes.jpg": []byte("<html><script>alert(1)</script></html>")} {
		if err := os.WriteFile(filepath.Join(bad, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, localmode.Input{Path: filepath.Join(bad, name), Object: "bad/" + name})
	}
	for _, in := range ins {
		if _, err := env.Submit(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Queue.Drain(ctx, localmode.WorkTopic, env.Pipeline.Handle); err != nil {
		t.Fatal(err)
	}
	jobs, err := env.Meta.List(ctx, meta.Filter{})
	if err != nil || len(jobs) != len(ins) {
		t.Fatalf("%d jobs for %d inputs: %v", len(jobs), len(ins), err)
	}
	h := review.New(review.Options{Project: cfg, Meta: env.Meta, Buckets: []blob.Bucket{env.Incoming, env.Processed, env.Quarantine}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &run{env: env, srv: srv, jobs: jobs}
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func boxesOf(jobs []meta.Job) (n int) {
	for _, j := range jobs {
		for _, r := range j.Results {
			for _, d := range r.Detections {
				if d.Box != nil {
					n++
				}
			}
		}
	}
	return n
}

func TestPageAndFilters(t *testing.T) {
	r := runSamples(t)
	resp, page := get(t, r.srv.URL+"/review/")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "<script") {
		t.Fatal("the page refers to an external resource or carries a script")
	}
	if got := strings.Count(page, "<article "); got != len(r.jobs) {
		t.Errorf("%d cards, want %d", got, len(r.jobs))
	}
	// Each box is drawn twice: over the original and over the processed image.
	if got, want := strings.Count(page, `class="box"`), 2*boxesOf(r.jobs); got != want || want < 40 {
		t.Errorf("%d boxes drawn, want %d", got, want)
	}
	if strings.Contains(page, "ZgotmplZ") {
		t.Error("a value was refused by html/template (ZgotmplZ): boxes would be misplaced")
	}
	if !strings.Contains(page, "Prediction drift") || !strings.Contains(page, "<polyline") {
		t.Error("no drift section with a chart")
	}

	_, q := get(t, r.srv.URL+"/review/?filter=quarantined")
	if n := strings.Count(q, "<article "); n != 2 || !strings.Contains(q, "50000x50000") || strings.Contains(q, `<img class="original"`) {
		t.Errorf("quarantined filter: %d cards", n)
	}
	_, faces := get(t, r.srv.URL+"/review/?filter=faces")
	want := 0
	for _, j := range r.jobs {
		for _, res := range j.Results {
			if len(res.Detections) > 0 {
				want++
				break
			}
		}
	}
	if n := strings.Count(faces, "<article "); n != want || want < 7 {
		t.Errorf("faces filter: %d cards, want %d", n, want)
	}
	if resp, _ := get(t, r.srv.URL+"/review/?filter=cats"); resp.StatusCode != 400 {
		t.Errorf("unknown filter: %d", resp.StatusCode)
	}
}

func TestImagesServedOnlyForJobsAndOnlyImages(t *testing.T) {
	r := runSamples(t)
	img := func(key, kind string) (*http.Response, string) {
		return get(t, r.srv.URL+"/review/image?"+url.Values{"key": {key}, "kind": {kind}}.Encode())
	}
	for _, j := range r.jobs {
		switch {
		case j.State == meta.StateDone:
			for _, kind := range []string{"original", "processed"} {
				resp, body := img(j.Key, kind)
				if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") || len(body) < 1000 {
					t.Errorf("%s %s: %d %s", j.Source.Object, kind, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
			}
		case strings.HasSuffix(j.Source.Object, "notes.jpg"):
			// Quarantined HTML posing as a JPEG is never handed to the browser as such.
			if resp, _ := img(j.Key, "original"); resp.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("HTML upload served: %d", resp.StatusCode)
			}
			resp, body := get(t, r.srv.URL+"/review/image?"+url.Values{"key": {j.Key}, "kind": {"original"}, "download": {"1"}}.Encode())
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" ||
				!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(body, "<script>") {
				t.Errorf("quarantined original download: %d %v", resp.StatusCode, resp.Header)
			}
		}
		if j.State == meta.StateQuarantined {
			if resp, _ := img(j.Key, "processed"); resp.StatusCode != 404 {
				t.Errorf("quarantined job has a processed image: %d", resp.StatusCode)
			}
		}
	}
	if resp, _ := img("incoming/../../etc/passwd#1", "original"); resp.StatusCode != 404 {
		t.Errorf("unknown key: %d", resp.StatusCode)
	}
}
