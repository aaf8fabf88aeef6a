package review_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
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

// shared is one run for every test of the package: the page only reads it.
var shared struct {
	once sync.Once
	dir  string
	r    *run
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.r != nil {
		shared.r.srv.Close()
		shared.r.env.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func runSamples(t *testing.T) *run {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "review-test-"); shared.err == nil {
			shared.r, shared.err = newRun(shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.r
}

func newRun(dir string) (*run, error) {
	imaging.Init(0)
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		return nil, err
	}
	// A drift baseline small enough for the samples, so the page shows the figures.
	cfg.Monitoring.Drift = &config.Drift{Analysis: "faces", Threshold: 0.2, Window: 10, BaselineImages: 10}
	cfg.ApplyDefaults()
	env, err := localmode.Open(cfg, filepath.Join(dir, "out"), localmode.Options{Workers: 2})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	ins, err := localmode.FindInputs([]string{photos.Dir()})
	if err != nil {
		return nil, err
	}
	// Re-encoded copies: the same scenes as new images, so the drift window fills.
	copies := filepath.Join(dir, "copies")
	if err := os.MkdirAll(copies, 0o755); err != nil {
		return nil, err
	}
	for _, in := range ins {
		data, err := os.ReadFile(in.Path)
		if err != nil {
			return nil, err
		}
		img, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(in.Path), filepath.Ext(in.Path)) + "-q80.jpg"
		if err := os.WriteFile(filepath.Join(copies, name), buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		ins = append(ins, localmode.Input{Path: filepath.Join(copies, name), Object: "copies/" + name})
	}
	for name, data := range map[string][]byte{"bomb.png": testimg.PNGBomb(50000, 50000), "notes.jpg": []byte("<html><script>alert(1)</script></html>")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
		ins = append(ins, localmode.Input{Path: filepath.Join(dir, name), Object: "bad/" + name})
	}
	for _, in := range ins {
		if _, err := env.Submit(ctx, in); err != nil {
			return nil, err
		}
	}
	if err := env.Queue.Drain(ctx, localmode.WorkTopic, env.Pipeline.Handle); err != nil {
		return nil, err
	}
	jobs, err := env.Meta.List(ctx, meta.Filter{})
	if err != nil || len(jobs) != len(ins) {
		return nil, fmt.Errorf("%d jobs for %d inputs: %v", len(jobs), len(ins), err)
	}
	h := review.New(review.Options{Project: cfg, Meta: env.Meta, Buckets: []blob.Bucket{env.Incoming, env.Processed, env.Quarantine}, RawOriginals: true})
	return &run{env: env, srv: httptest.NewServer(h), jobs: jobs}, nil
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

// boxesOf counts the boxes the page draws: those of done jobs (a quarantined
// original is never shown, so neither are its boxes).
func boxesOf(jobs []meta.Job) (n int) {
	for _, j := range jobs {
		if j.State != meta.StateDone {
			continue
		}
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
	if _, few := get(t, r.srv.URL+"/review/?limit=3&filter=faces"); strings.Count(few, "<article ") != 3 || !strings.Contains(few, `href="/review/?filter=faces&amp;limit=12"`) {
		t.Errorf("limit=3: %d cards, or no link to more", strings.Count(few, "<article "))
	}
	if resp, _ := get(t, r.srv.URL+"/review/?limit=100000"); resp.StatusCode != 400 {
		t.Errorf("limit over the cap: %d", resp.StatusCode)
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
				// The page's preview: a JPEG fitted to the asked width, same aspect.
				resp, body = get(t, r.srv.URL+"/review/image?"+url.Values{"key": {j.Key}, "kind": {kind}, "w": {"200"}}.Encode())
				cfg, format, err := image.DecodeConfig(strings.NewReader(body))
				if err != nil || resp.StatusCode != 200 || format != "jpeg" || max(cfg.Width, cfg.Height) > 200 ||
					abs(float64(cfg.Width)/float64(cfg.Height)-float64(j.Width)/float64(j.Height)) > 0.03 {
					t.Errorf("%s %s preview: %d %s %dx%d (original %dx%d) %v", j.Source.Object, kind, resp.StatusCode, format, cfg.Width, cfg.Height, j.Width, j.Height, err)
				}
			}
		case strings.HasSuffix(j.Source.Object, "notes.jpg"):
			// Quarantined HTML posing as a JPEG is never handed to the browser as such.
			if resp, _ := img(j.Key, "original"); resp.StatusCode != http.StatusForbidden {
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
	// An original gone from incoming (its lifecycle) is served from its quarantine copy.
	for _, j := range r.jobs {
		if !strings.HasSuffix(j.Source.Object, "bomb.png") {
			continue
		}
		if err := r.env.Incoming.Delete(context.Background(), j.Source.Object); err != nil {
			t.Fatal(err)
		}
		resp, body := get(t, r.srv.URL+"/review/image?"+url.Values{"key": {j.Key}, "kind": {"original"}, "download": {"1"}}.Encode())
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "\x89PNG") {
			t.Errorf("quarantined original after incoming lost it: %d", resp.StatusCode)
		}
	}
	if resp, _ := img("incoming/../../etc/passwd#1", "original"); resp.StatusCode != 404 {
		t.Errorf("unknown key: %d", resp.StatusCode)
	}
}

func abs(x float64) float64 { return max(x, -x) }

// A quarantined original is only ever a download: never decoded, not even a valid
// image quarantined for another reason. Where the page may be reachable by others
// (RawOriginals off: the cloud, a non-loopback address), originals are served only
// as previews — re-encoded, metadata stripped — and never byte for byte.
func TestReviewNeverDecodesQuarantinedNorLeaksRawOriginals(t *testing.T) {
	r := runSamples(t)
	// A good photo quarantined for a reason other than its bytes.
	key := "test/quarantined-good-photo#1"
	done := addJob(t, r, key, func(j *meta.Job) {
		*j = meta.Job{State: meta.StateQuarantined, Source: j.Source, Reason: "forced by the test"}
	})
	q := func(base string, v url.Values) int {
		resp, _ := get(t, base+"/review/image?"+v.Encode())
		return resp.StatusCode
	}
	for _, v := range []url.Values{{"key": {key}, "kind": {"original"}, "w": {"200"}}, {"key": {key}, "kind": {"original"}}} {
		if code := q(r.srv.URL, v); code != http.StatusForbidden {
			t.Errorf("quarantined original %v: %d, want 403 (downloads only)", v, code)
		}
	}
	if code := q(r.srv.URL, url.Values{"key": {key}, "kind": {"original"}, "download": {"1"}}); code != 200 {
		t.Errorf("quarantined original as a download on a local page: %d, want 200", code)
	}

	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	shared := httptest.NewServer(review.New(review.Options{Project: cfg, Meta: r.env.Meta,
		Buckets: []blob.Bucket{r.env.Incoming, r.env.Processed, r.env.Quarantine}}))
	defer shared.Close()
	if code := q(shared.URL, url.Values{"key": {done.Key}, "kind": {"original"}}); code != http.StatusForbidden {
		t.Errorf("raw original on a page others may reach: %d, want 403", code)
	}
	if code := q(shared.URL, url.Values{"key": {key}, "kind": {"original"}, "download": {"1"}}); code != http.StatusForbidden {
		t.Errorf("quarantined download on a page others may reach: %d, want 403", code)
	}
	resp, body := get(t, shared.URL+"/review/image?"+url.Values{"key": {done.Key}, "kind": {"original"}, "w": {"200"}}.Encode())
	if _, format, err := image.DecodeConfig(strings.NewReader(body)); resp.StatusCode != 200 || format != "jpeg" || err != nil {
		t.Errorf("preview of an original on a shared page: %d %s %v", resp.StatusCode, format, err)
	}
	if strings.Contains(body, "Exif") {
		t.Error("the preview carries EXIF metadata")
	}
	// Issue 24 #2: a "preview" that is a download (the stored bytes, EXIF and all) or
	// as large as the photo itself is not a preview.
	for _, v := range []url.Values{
		{"key": {done.Key}, "kind": {"original"}, "download": {"1"}, "w": {"16"}},
		{"key": {done.Key}, "kind": {"original"}, "download": {"1"}},
	} {
		if code := q(shared.URL, v); code == http.StatusOK {
			t.Errorf("original %v on a shared page: 200, the stored bytes", v)
		}
	}
	if code := q(shared.URL, url.Values{"key": {done.Key}, "kind": {"original"}, "w": {"4096"}}); code != http.StatusBadRequest {
		t.Errorf("a 4096 px 'preview' of an original: %d, want 400 (previews up to %d px)", code, review.PreviewSize)
	}
}

// The page says when the anonymization re-check found faces the analysis missed.
func TestPageShowsRecheckedFaces(t *testing.T) {
	r := runSamples(t)
	addJob(t, r, "test/rechecked#1", func(j *meta.Job) { j.Rechecked = 2 })
	_, body := get(t, r.srv.URL+"/review/?limit=500")
	if !strings.Contains(body, "the re-check found 2 faces the analysis missed") {
		t.Fatal("the page does not show the re-check's finds")
	}
}

// Each card says which model version produced its results, and ?version= keeps only
// the images a version produced results for.
func TestPageFiltersByModelVersion(t *testing.T) {
	r := runSamples(t)
	key := "test/canary-version#1"
	addJob(t, r, key, func(j *meta.Job) {
		j.Results = []meta.Result{{Analysis: "faces", Model: "vertex:endpoint", ModelVersion: "faces@7", Detections: []meta.Detection{}}}
	})
	_, all := get(t, r.srv.URL+"/review/?limit=500")
	if !strings.Contains(all, ">faces@7</a>") || !strings.Contains(all, "version=faces%407") || !strings.Contains(all, ">"+builtin.Version+"</a>") {
		t.Fatal("cards do not show their model versions")
	}
	_, only := get(t, r.srv.URL+"/review/?version=faces@7")
	if n := strings.Count(only, "<article"); n != 1 || !strings.Contains(only, key) {
		t.Fatalf("?version=faces@7 shows %d cards, want the 1 image that version produced", n)
	}
}

// addJob records a final copy of the first done job of the run under key, edited by
// edit, as if the pipeline had finished it.
func addJob(t *testing.T, r *run, key string, edit func(*meta.Job)) meta.Job {
	t.Helper()
	ctx := context.Background()
	var done meta.Job
	for _, j := range r.jobs {
		if j.State == meta.StateDone {
			done = j
			break
		}
	}
	c, err := r.env.Meta.Claim(ctx, key, done.Source, "t", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	j := done
	j.Key = key
	edit(&j)
	if err := r.env.Meta.Complete(ctx, c, j); err != nil {
		t.Fatal(err)
	}
	return done
}

// Issue 24 #3: a preview decodes the original, so it takes room in the service's
// admission budget first (its header's Cost), and waits its turn (503) when there is
// none.
func TestPreviewsAreAdmitted(t *testing.T) {
	r := runSamples(t)
	jobs, err := r.env.Meta.List(context.Background(), meta.Filter{State: meta.StateDone, Limit: 1})
	if err != nil || len(jobs) == 0 {
		t.Fatal(jobs, err)
	}
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	var admitted []int64
	full := false
	h := review.New(review.Options{Project: cfg, Meta: r.env.Meta, Buckets: []blob.Bucket{r.env.Incoming, r.env.Processed, r.env.Quarantine},
		Admit: func(_ context.Context, px int64) (func(), error) {
			if full {
				return nil, errors.New("no room")
			}
			admitted = append(admitted, px)
			return func() {}, nil
		}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	u := srv.URL + "/review/image?" + url.Values{"key": {jobs[0].Key}, "kind": {"original"}, "w": {"200"}}.Encode()
	if resp, _ := get(t, u); resp.StatusCode != 200 || len(admitted) != 1 || admitted[0] < int64(jobs[0].Width)*int64(jobs[0].Height)/4 {
		t.Fatalf("preview: %d, admitted %v for a %dx%d job", resp.StatusCode, admitted, jobs[0].Width, jobs[0].Height)
	}
	full = true
	if resp, _ := get(t, u); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("preview with no room: %d, want 503 with Retry-After", resp.StatusCode)
	}
}
