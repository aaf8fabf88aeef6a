package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFirstHour walks a newcomer's first hour in one go, as README's quick start has
// it (issue 28): new, validate of a file with five different mistakes (each reported,
// with its line and key path), validate again once fixed, run, run again, serve (an
// upload with its file name, a wrong method answered in JSON, logs for a person),
// status without a name, version; a transparent PNG hiding a portrait rides along in
// the run. Each step is held to what the user sees: the output and the exit status.
func TestFirstHour(t *testing.T) {
	root := t.TempDir()

	// new: every file it writes, said.
	out, err := runCLI(t, "--root", root, "new", "acme", "--gcp-project", "acme-prod", "--region", "europe-west3")
	if err != nil {
		t.Fatalf("new: %v\n%s", err, out)
	}
	for _, f := range []string{"projects/acme/project.yaml", "projects/acme/README.md", "Pulumi.acme.yaml", ".github/workflows/deploy-acme.yaml", "projects/acme/cloudbuild.yaml"} {
		if !strings.Contains(out, "created "+f) {
			t.Errorf("new did not say it created %s:\n%s", f, out)
		}
	}

	// validate: five mistakes of five kinds, all reported in one pass.
	file := filepath.Join(root, "projects", "acme", "project.yaml")
	good, err := os.ReadFile(file)
	must(t, err)
	mistakes := []struct{ from, to, path, says string }{
		{"autoOrient: true", "autoOrent: true", "pipeline.prepare", `unknown key "autoOrent" (did you mean "autoOrient"?)`},
		{"maxAttempts: 5", "maxAttempts: five", "delivery.maxAttempts", `("five"); it must be a whole number`},
		{"mode: sync", "mode: sometimes", "pipeline.analyses[0].mode", `"sometimes": use sync`},
		{"blur: {analysis: faces", "blur: {analysis: face", "pipeline.transforms[0].blur.analysis", `"face" is not an analysis`},
		{"alertEmails: []", "alertEmails: ops@acme.example", "monitoring.alertEmails", `it must be a list`},
	}
	bad := string(good)
	for _, m := range mistakes {
		if !strings.Contains(bad, m.from) {
			t.Fatalf("the template has no %q any more: update this walk", m.from)
		}
		bad = strings.Replace(bad, m.from, m.to, 1)
	}
	must(t, os.WriteFile(file, []byte(bad), 0o644))
	out, err = runCLI(t, "--root", root, "validate", "acme")
	if exitCode(err) != 1 {
		t.Fatalf("validate of five mistakes: %v, want exit status 1\n%s", err, out)
	}
	lines := strings.Split(bad, "\n")
	for _, m := range mistakes {
		line := 0
		for i, l := range lines {
			if strings.Contains(l, m.to) {
				line = i + 1
			}
		}
		prefix := fmt.Sprintf("projects/acme/project.yaml:%d:", line)
		found := false
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, prefix) && strings.Contains(l, ": "+m.path+": ") && strings.Contains(l, m.says) {
				found = true
			}
		}
		if !found {
			t.Errorf("validate did not report %s at line %d (%s):\n%s", m.path, line, m.says, out)
		}
	}
	must(t, os.WriteFile(file, good, 0o644))
	if out, err = runCLI(t, "--root", root, "validate", "acme"); err != nil {
		t.Fatalf("validate of the fixed file: %v\n%s", err, out)
	}

	// run: a photo, a broken one and a text file; then again.
	in := t.TempDir()
	photo, err := os.ReadFile("../../testdata/photos/faces/grace_hopper.jpg")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(in, "grace.jpg"), photo, 0o644))
	must(t, os.WriteFile(filepath.Join(in, "broken.jpg"), []byte("not a jpeg at all"), 0o644))
	must(t, os.WriteFile(filepath.Join(in, "notes.txt"), []byte("shot on Tuesday"), 0o644))
	// A logo-style PNG whose fully transparent pixels still hold a portrait.
	must(t, os.WriteFile(filepath.Join(in, "hidden.png"), rgbaPNG(t, "../../testdata/photos/faces/grace_hopper.jpg", func(int, int) uint8 { return 0 }), 0o644))
	data := t.TempDir()
	out, err = runCLI(t, "--root", root, "run", "--project", "acme", "--out", data, "--no-progress", in)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	// The text file is no image: said to be left out, and not counted.
	// The hidden portrait is never seen: no face there, and its output is white.
	for _, want := range []string{"3 images: 2 processed, 0 skipped (done before), 1 quarantined, 0 failed; 1 faces", "left out 1 files", "notes.txt",
		"hidden.png  done         0 "} {
		if !strings.Contains(out, want) {
			t.Errorf("run: no %q in\n%s", want, out)
		}
	}
	hidden, err := os.ReadFile(filepath.Join(data, "processed", filepath.Base(in), "hidden.png.jpg"))
	must(t, err)
	white, err := jpeg.Decode(bytes.NewReader(hidden))
	must(t, err)
	if r, g, b, _ := white.At(white.Bounds().Dx()/2, white.Bounds().Dy()/3).RGBA(); r>>8 < 247 || g>>8 < 247 || b>>8 < 247 {
		t.Errorf("the output of a fully transparent PNG is not white where the hidden face is: %d %d %d", r>>8, g>>8, b>>8)
	}
	out, err = runCLI(t, "--root", root, "run", "--project", "acme", "--out", data, "--no-progress", "--fail-on-quarantine", in)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != ExitQuarantined {
		t.Errorf("run again with --fail-on-quarantine: %v, want exit status %d\n%s", err, ExitQuarantined, out)
	}
	if !strings.Contains(out, "2 skipped (done before), 1 quarantined (1 before this run)") {
		t.Errorf("run again: the summary does not match the table:\n%s", out)
	}

	// serve: an upload answered with its file name; a GET answered in JSON.
	addr := freeAddr(t)
	stop, logs := startCLI(t, "--root", root, "serve", "--project", "acme", "--addr", addr, "--data", t.TempDir())
	base := "http://" + addr
	waitHealthy(t, base+"/healthz")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("image", "grace at the desk.jpg")
	must(t, err)
	_, _ = fw.Write(photo)
	must(t, mw.Close())
	resp, err := http.Post(base+"/v1/images:analyze", mw.FormDataContentType(), &body)
	must(t, err)
	var ar struct {
		Name    string `json:"name"`
		Results []struct {
			Detections []json.RawMessage `json:"detections"`
		} `json:"results"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&ar))
	resp.Body.Close()
	if resp.StatusCode != 200 || ar.Name != "grace at the desk.jpg" || len(ar.Results) != 1 || len(ar.Results[0].Detections) != 1 {
		t.Errorf("serve: %d %+v\n%s", resp.StatusCode, ar, logs)
	}
	// docs/usage.md's example answer is this photo's: its numbers are today's.
	resp, err = http.Post(base+"/v1/images:analyze", "image/jpeg", bytes.NewReader(photo))
	must(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	usage, err := os.ReadFile("../../docs/usage.md")
	must(t, err)
	for _, field := range []string{`"confidence":`, `"box":`, `"modelVersion":`} {
		i := strings.Index(string(raw), field)
		if i < 0 {
			t.Fatalf("the answer has no %s: %s", field, raw)
		}
		value := string(raw[i:])
		value = value[:strings.IndexAny(value[len(field):], ",}")+len(field)+1]
		if field == `"box":` {
			value = string(raw[i : i+strings.Index(string(raw[i:]), "}")+1])
		}
		if !strings.Contains(string(usage), value) {
			t.Errorf("docs/usage.md's example answer does not say %s (today's answer: %s)", value, raw)
		}
	}
	resp, err = http.Get(base + "/v1/images:analyze")
	must(t, err)
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
	}
	if resp.StatusCode != 405 || json.Unmarshal(raw, &e) != nil || e.Code != 405 || !strings.Contains(e.Error, "use POST") {
		t.Errorf("GET on the API: %d %s, want a JSON 405 that says to POST", resp.StatusCode, raw)
	}
	must(t, stop())
	// Local logs are for a person: text, without Cloud Logging's fields or Go struct
	// dumps.
	if !strings.Contains(logs.String(), `msg="POST /v1/images:analyze 200"`) {
		t.Errorf("serve's logs do not say what it answered:\n%s", logs)
	}
	for _, cloud := range []string{"logging.googleapis.com", "{RequestMethod:", `"severity"`} {
		if strings.Contains(logs.String(), cloud) {
			t.Errorf("serve's local logs carry %q:\n%s", cloud, logs)
		}
	}

	// status without a name: the project just created, said so.
	out, _ = runCLI(t, "--root", root, "status", "--data", data)
	if !strings.Contains(out, "project acme") {
		t.Errorf("status without a name did not show acme:\n%s", out)
	}

	// status on the cloud backend without credentials: the client's words, and what
	// to do (a machine that has Application Default Credentials cannot show it).
	home, _ := os.UserHomeDir()
	if _, err := os.Stat(filepath.Join(home, ".config", "gcloud", "application_default_credentials.json")); os.Getenv("GOOGLE_APPLICATION_CREDENTIALS") == "" && err != nil {
		out, err = runCLI(t, "--root", root, "status", "acme", "--backend", "cloud")
		if err == nil || !strings.Contains(out+withHint(err), "gcloud auth application-default login") { // what main prints
			t.Errorf("status --backend cloud without credentials: %v\n%s", err, out)
		}
	}

	// version: what a bug report needs.
	out, err = runCLI(t, "version")
	if err != nil || !strings.Contains(out, "libvips") || !strings.Contains(out, "onnxruntime") {
		t.Errorf("version: %v\n%s", err, out)
	}
}
