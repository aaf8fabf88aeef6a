package modelserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/modelserver"
	"github.com/visionstack/visionstack/runtime/server"
	"github.com/visionstack/visionstack/testdata/photos"
)

func serve(t *testing.T, routes modelserver.Routes) *httptest.Server {
	t.Helper()
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(modelserver.Handler(m, modelserver.Options{Routes: routes, ModelID: "builtin-faces"}))
	t.Cleanup(hs.Close)
	return hs
}

func request(t *testing.T) []byte {
	t.Helper()
	img, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(modelserver.PredictRequest{
		Instances:  []model.Instance{{Content: base64.StdEncoding.EncodeToString(img), MimeType: "image/jpeg"}},
		Parameters: model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 10}})
	return body
}

func TestVertexContract(t *testing.T) {
	t.Setenv("AIP_HTTP_PORT", "9999")
	t.Setenv("AIP_PREDICT_ROUTE", "/v1/models/faces:predict")
	t.Setenv("AIP_HEALTH_ROUTE", "/v1/models/faces")
	routes := modelserver.RoutesFromEnv()
	if routes.Port != "9999" {
		t.Fatalf("port %q", routes.Port)
	}
	hs := serve(t, routes)
	for _, path := range []string{"/v1/models/faces:predict", "/v1/projects/p/locations/europe-west3/endpoints/123:predict"} {
		resp, err := http.Post(hs.URL+path, "application/json", bytes.NewReader(request(t)))
		if err != nil {
			t.Fatal(err)
		}
		var pr modelserver.PredictResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		// Vertex adds the deployed model's id to the container's answer: the container
		// leaves it out; the public endpoint path stands in for Vertex and sets one.
		wantID := ""
		if strings.Contains(path, "/endpoints/") {
			wantID = "builtin-faces"
		}
		if err != nil || resp.StatusCode != 200 || len(pr.Predictions) != 1 || pr.DeployedModelID != wantID {
			t.Fatalf("%s: %d %+v %v", path, resp.StatusCode, pr, err)
		}
		p := pr.Predictions[0]
		if err := p.Validate(true); err != nil || len(p.BBoxes) == 0 {
			t.Fatalf("%s: prediction %+v: %v", path, p, err)
		}
	}
	resp, err := http.Get(hs.URL + "/v1/models/faces")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
}

func TestBadRequests(t *testing.T) {
	hs := serve(t, modelserver.RoutesFromEnv())
	for _, c := range []struct {
		name string
		body []byte
		code int
	}{
		{"not json", []byte("{"), 400},
		{"no instances", []byte(`{"instances":[]}`), 400},
		{"not base64", []byte(`{"instances":[{"content":"***"}]}`), 400},
		{"too large", append(append([]byte(`{"instances":[{"content":"`), bytes.Repeat([]byte("A"), 1_600_000)...), []byte(`"}]}`)...), 413},
		// Every decode passes the gate: formats libvips would read from a buffer but
		// the allowlist does not name (a 20000×20000 SVG took 12 s and 900 MB), and
		// decompression bombs, are refused from their header.
		{"svg bomb", instanceBody(`<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"><rect width="20000" height="20000"/></svg>`), 400},
		{"png bomb", instanceBody(string(testimg.PNGBomb(50000, 50000))), 400},
		{"pdf", instanceBody("%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/MediaBox[0 0 20000 20000]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"), 400},
		{"truncated jpeg", instanceBody("\xff\xd8\xff\xe0\x00\x10JFIF"), 400},
		{"gif of 65535×65535", instanceBody("GIF89a\xff\xff\xff\xff\x00\x00\x00"), 400},
	} {
		resp, err := http.Post(hs.URL+"/predict", "application/json", bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.code)
		}
	}
}

// instanceBody is a predict request with data as its one instance.
func instanceBody(data string) []byte {
	body, _ := json.Marshal(modelserver.PredictRequest{Instances: []model.Instance{{Content: base64.StdEncoding.EncodeToString([]byte(data))}}})
	return body
}

// counting is a predictor that counts its calls: a refused request never reaches it.
type counting struct{ calls int }

func (c *counting) Predict(context.Context, []model.Instance, model.Parameters) ([]model.Prediction, error) {
	c.calls++
	return nil, errors.New("not for this test")
}

// Issue 24 #4: model serve bounds what one request and all of them together may
// decode. 23 instances of a 49 MP image once fitted in one 1.5 MB request and took
// 30 s and 706 MB; now a request over the instance cap or the pixel budget is refused
// from the images' headers (413), and one that must wait for room past its turn gets
// 429 with Retry-After; none of them reaches the model.
func TestModelServeBoundsRequests(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(testimg.PNGBomb(7000, 7000)) // 49 MP declared
	body := func(n int, content string) []byte {
		in := make([]model.Instance, n)
		for i := range in {
			in[i] = model.Instance{Content: content, MimeType: "image/png"}
		}
		b, _ := json.Marshal(modelserver.PredictRequest{Instances: in})
		return b
	}
	adm := server.NewAdmission(100_000_000, 50*time.Millisecond)
	p := &counting{}
	hs := httptest.NewServer(modelserver.Handler(p, modelserver.Options{Routes: modelserver.RoutesFromEnv(),
		Limits: builtin.InputLimits, Admit: adm.Admit, Budget: 100_000_000}))
	defer hs.Close()
	post := func(b []byte) (int, string, http.Header) {
		resp, err := http.Post(hs.URL+"/predict", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg), resp.Header
	}
	if code, msg, _ := post(body(23, big)); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "at most 8") {
		t.Errorf("23 instances: %d %s", code, msg)
	}
	if code, msg, _ := post(body(3, big)); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "budget") {
		t.Errorf("3 × 49 MP against a 100 MP budget: %d %s", code, msg)
	}
	release, err := adm.Admit(context.Background(), 90_000_000) // other requests hold most of it
	if err != nil {
		t.Fatal(err)
	}
	code, msg, hdr := post(body(1, big))
	release()
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("49 MP while 90 of 100 MP are held: %d %s, want 429 with Retry-After", code, msg)
	}
	if p.calls != 0 {
		t.Errorf("the model was called %d times for refused requests", p.calls)
	}
}
