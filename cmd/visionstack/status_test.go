package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"

	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/firestore"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/testdata/photos"
)

// driftProject writes a copy of the demo project with a small drift baseline and
// window into a new root.
func driftProject(t *testing.T) string {
	root := t.TempDir()
	src, err := os.ReadFile(photos.DemoProject())
	must(t, err)
	y := strings.Replace(string(src), "drift: {analysis: faces, threshold: 0.2}", "drift: {analysis: faces, threshold: 0.2, window: 10, baselineImages: 10}", 1)
	if y == string(src) {
		t.Fatal("demo project has no drift line to edit")
	}
	writeDemo(t, root, y)
	return root
}

// record completes n jobs whose faces analysis found faces boxes with confidence conf.
func record(t *testing.T, s meta.Store, from, n, faces int, conf float64) {
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		key := fmt.Sprintf("sha256:%04d", i)
		c, err := s.Claim(ctx, key, meta.Source{Bucket: "incoming", Object: key}, "w", time.Minute)
		must(t, err)
		r := meta.Result{Analysis: "faces", Model: "builtin:faces", Detections: []meta.Detection{}}
		for range faces {
			r.Detections = append(r.Detections, meta.Detection{Label: "face", Confidence: conf, Box: &meta.Box{XMax: 0.1, YMax: 0.1}})
		}
		must(t, s.Complete(ctx, c, meta.Job{State: meta.StateDone, Results: []meta.Result{r}}))
	}
}

// status replays the drift from the store: collecting, then stable on the baseline's
// own mix, then DRIFTED on a shifted one; --baseline-yaml prints a block that loads.
func TestStatusShowsDrift(t *testing.T) {
	root := driftProject(t)
	data := filepath.Join(root, "out")
	must(t, os.MkdirAll(data, 0o755))
	s, err := sqlite.Open(filepath.Join(data, "visionstack.db"))
	must(t, err)
	defer s.Close()
	status := func(args ...string) string {
		out, err := runCLI(t, append([]string{"--root", root, "status", "demo", "--data", data}, args...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return out
	}
	record(t, s, 0, 4, 2, 0.9)
	if out := status(); !strings.Contains(out, "jobs (latest 1000): 4 done") || !strings.Contains(out, "collecting the baseline: 4 of 10 images") {
		t.Fatalf("status while collecting:\n%s", out)
	}
	record(t, s, 4, 16, 2, 0.9)
	if out := status(); !strings.Contains(out, "PSI 0.000") || !strings.Contains(out, "stable") {
		t.Fatalf("status on the baseline's mix:\n%s", out)
	}
	record(t, s, 20, 10, 0, 0)
	out := status()
	if !strings.Contains(out, "DRIFTED") || !strings.Contains(out, "baseline: first 10 images") {
		t.Fatalf("status after a shifted mix:\n%s", out)
	}
	t.Log("\n" + out)

	block := status("--baseline-yaml")
	var indented []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		indented = append(indented, "    "+l)
	}
	y := strings.Replace(mustRead(t, filepath.Join(root, "projects", "demo", "project.yaml")),
		"  drift: {analysis: faces, threshold: 0.2, window: 10, baselineImages: 10}",
		"  drift:\n    analysis: faces\n"+strings.Join(indented, "\n"), 1)
	cfg, err := config.Load("pinned.yaml", []byte(y))
	if err != nil {
		t.Fatalf("the printed baseline does not load:\n%s\n%v", y, err)
	}
	if b := cfg.Monitoring.Drift.Baseline; b == nil || b.BoxesPerImage[2] != 1 || b.Labels["face"] != 1 || b.Confidence[9] != 1 {
		t.Fatalf("pinned baseline: %+v (want every image with 2 faces at 0.9)", b)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func TestStatusWithoutRunSaysWhatToDo(t *testing.T) {
	out, err := runCLI(t, "--root", "../..", "status", "demo", "--data", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "visionstack run --project demo") {
		t.Fatalf("status without a run: %v\n%s", err, out)
	}
}

// run --review serves the page of the run it just did.
func TestRunReview(t *testing.T) {
	addr := freeAddr(t)
	out := t.TempDir()
	stop, log := startCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", "--review", "--review-addr", addr,
		filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	for range 200 {
		if strings.Contains(log.String(), "review page: http://") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/review/")
	if err != nil {
		t.Fatalf("review page: %v\n%s", err, log)
	}
	body := make([]byte, 1<<20)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body[:n]), "grace_hopper.jpg") {
		t.Fatalf("review page: %d\n%s", resp.StatusCode, body[:n])
	}
	if err := stop(); err != nil {
		t.Fatalf("run --review did not stop on Ctrl-C: %v", err)
	}
}

// status --backend cloud reads the project's Firestore database (here Google's
// emulator, through FIRESTORE_EMULATOR_HOST).
func TestStatusOnFirestore(t *testing.T) {
	e, err := emulator.Firestore()
	switch {
	case emulator.Absent(err) && os.Getenv("CI") == "":
		t.Skip("SKIP: Firestore emulator not installed (scripts/install-deps.sh installs it)")
	case err != nil:
		t.Fatal(err)
	}
	defer e.Stop()
	t.Setenv("FIRESTORE_EMULATOR_HOST", e.Host)
	root := driftProject(t)
	cfg, err := config.LoadFile(filepath.Join(root, "projects", "demo", "project.yaml"))
	must(t, err)
	client, err := fs.NewClientWithDatabase(context.Background(), cfg.GCP.Project, cfg.Names().Database)
	must(t, err)
	s := firestore.New(client)
	defer s.Close()
	record(t, s, 0, 20, 2, 0.9)
	record(t, s, 20, 10, 1, 0.55)
	out, err := runCLI(t, "--root", root, "status", "demo", "--backend", "cloud")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Firestore database demo-meta of GCP project visionstack-demo") || !strings.Contains(out, "30 done") || !strings.Contains(out, "DRIFTED") {
		t.Fatalf("status on Firestore:\n%s", out)
	}
}

// writeDemo writes y as the demo project's file under root and returns its path.
func writeDemo(t *testing.T, root, y string) string {
	t.Helper()
	file := filepath.Join(root, "projects", "demo", "project.yaml")
	must(t, os.MkdirAll(filepath.Dir(file), 0o755))
	must(t, os.WriteFile(file, []byte(y), 0o644))
	return file
}
