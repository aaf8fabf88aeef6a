package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/syncbuf"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/testdata/photos"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCLI runs a long-lived command until the returned stop is called; stop returns
// the command's error.
func startCLI(t *testing.T, args ...string) (stop func() error, out *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncbuf.Buffer{}
	cmd := newRootCmd(out, out)
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return func() error { cancel(); return <-done }, out
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	for range 100 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never became healthy", url)
}

// serve answers the sync API, its local worker completes the rest, and SIGTERM-style
// cancellation lets an in-flight request finish before the command returns.
func TestServeSyncThenLocalWorker(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	stop, out := startCLI(t, "--root", "../..", "serve", "--project", "demo", "--addr", addr, "--data", data)
	base := "http://" + addr
	waitHealthy(t, base+"/healthz")

	img, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	must(t, err)
	resp, err := http.Post(base+"/v1/images:analyze", "image/jpeg", bytes.NewReader(img))
	must(t, err)
	var ar struct {
		Key     string `json:"key"`
		Results []struct {
			Detections []json.RawMessage `json:"detections"`
		} `json:"results"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&ar))
	resp.Body.Close()
	if resp.StatusCode != 200 || len(ar.Results) != 1 || len(ar.Results[0].Detections) == 0 {
		t.Fatalf("analyze: %d %+v\n%s", resp.StatusCode, ar, out)
	}
	// The local worker finishes the async part: a processed image appears.
	var processed []string
	for range 100 {
		processed, _ = filepath.Glob(filepath.Join(data, "processed", "sync", "*.jp*g")) // .jpeg sources keep their name
		if len(processed) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(processed) != 1 {
		t.Fatalf("async remainder did not complete\n%s", out)
	}
	// The service's own pages: metrics for Prometheus, the review page for people.
	// The processed image is written before the job's final record: poll a little.
	for path, want := range map[string]string{"/metrics": config.MetricJobs.PrometheusName() + `{outcome="ok",project="demo"} 1`,
		"/review/": `<article class="done"`, "/": "visionstack review"} {
		var code int
		var body []byte
		for range 100 {
			resp, err := http.Get(base + path)
			must(t, err)
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if code = resp.StatusCode; code == 200 && strings.Contains(string(body), want) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, lacks %q", path, code, want)
		}
	}

	// An in-flight request survives the shutdown signal.
	big, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample5.jpg"))
	must(t, err)
	codes := make(chan string, 1)
	go func() {
		resp, err := http.Post(base+"/v1/images:analyze", "image/jpeg", bytes.NewReader(big))
		if err != nil {
			codes <- err.Error()
			return
		}
		resp.Body.Close()
		codes <- fmt.Sprint(resp.StatusCode)
	}()
	time.Sleep(30 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v\n%s", err, out)
	}
	if c := <-codes; c != "200" {
		t.Fatalf("in-flight request during shutdown: %s", c)
	}
}

func TestModelServe(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	t.Setenv("AIP_HTTP_PORT", port)
	t.Setenv("AIP_PREDICT_ROUTE", "/predict")
	t.Setenv("AIP_HEALTH_ROUTE", "/health")
	stop, out := startCLI(t, "model", "serve")
	waitHealthy(t, "http://127.0.0.1:"+port+"/health")
	if err := stop(); err != nil {
		t.Fatalf("model serve: %v\n%s", err, out)
	}
	// It has no authentication of its own: off Vertex AI it listens on this machine
	// only (issue 24 #4); on Vertex (AIP_MODE=PREDICTION) on every interface.
	if !strings.Contains(out.String(), "addr=127.0.0.1:"+port) {
		t.Errorf("model serve off Vertex listens beyond loopback:\n%s", out)
	}
	t.Setenv("AIP_MODE", "PREDICTION")
	stop, out = startCLI(t, "model", "serve")
	waitHealthy(t, "http://127.0.0.1:"+port+"/health")
	if err := stop(); err != nil {
		t.Fatalf("model serve on Vertex: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "addr=[::]:"+port) {
		t.Errorf("model serve on Vertex does not listen on every interface:\n%s", out)
	}
}
