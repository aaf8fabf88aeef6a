package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFirstDeployOnARealProject is the smoke test of a first deploy on a real GCP
// project: new → up (placeholder image) → build and push the image with Cloud Build →
// up --image → up without an image (keeps it) → model deploy → alert policies present
// → upload a photo, processed through the real push (Cloud Run's front strips the
// token's signature) → its output, record and event → a sync call → destroy → a
// second up of the same name → destroy. It has not been run from this repository's
// CI (no GCP account there).
// It needs VISIONSTACK_E2E_GCP_PROJECT (a project where the caller has the deployer's
// roles, README "Deploy a project"), gcloud logged in, and the pulumi CLI logged in to
// a backend; `make e2e-gcp` runs it. It is skipped, and says so, everywhere else.
func TestFirstDeployOnARealProject(t *testing.T) {
	gcp := os.Getenv("VISIONSTACK_E2E_GCP_PROJECT")
	if gcp == "" {
		t.Skip("skipped: set VISIONSTACK_E2E_GCP_PROJECT to a GCP project to deploy a real stack into (make e2e-gcp); it is created and destroyed, and costs a few cents")
	}
	region := envOr("VISIONSTACK_E2E_REGION", "europe-west3")
	name := fmt.Sprintf("e2e%d", time.Now().Unix()%100000)
	root := t.TempDir()
	cli := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, append([]string{"--root", root}, args...)...)
		if err != nil {
			t.Fatalf("visionstack %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	sh := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// The repository's program and Dockerfile, with the new project stamped beside them.
	sh("cp", "-r", "../../Pulumi.yaml", "../../infra", "../../go.mod", "../../go.sum", "../../Dockerfile", "../../cmd", "../../runtime",
		"../../internal", "../../templates", "../../testdata", root)
	cli("new", name, "--gcp-project", gcp, "--region", region)
	// The project must be destroyable at the end.
	pf := filepath.Join(root, "projects", name, "project.yaml")
	y := strings.Replace(mustRead(t, pf), "gcp: {project: "+gcp+", region: "+region+"}", "gcp: {project: "+gcp+", region: "+region+", deleteProtection: false}", 1)
	must(t, os.WriteFile(pf, []byte(y), 0o644))

	t.Cleanup(func() {
		if out, err := runCLI(t, "--root", root, "destroy", name, "--yes"); err != nil {
			t.Errorf("destroy %s: %v\n%s: delete what is left by hand", name, err, out)
		}
	})
	cli("up", name) // placeholder image: creates the registry
	image := fmt.Sprintf("%s-docker.pkg.dev/%s/%s/visionstack:e2e", region, gcp, name)
	sh("gcloud", "builds", "submit", root, "--project", gcp, "--tag", image, "--quiet")
	digest := sh("gcloud", "artifacts", "docker", "images", "describe", image, "--format=value(image_summary.digest)")
	byDigest := strings.Split(image, ":e2e")[0] + "@" + digest
	cli("up", name, "--image", byDigest)
	// An up without --image (a fresh clone, CI without a digest) keeps the pipeline.
	cli("up", name)
	if img := sh("gcloud", "run", "services", "describe", name+"-pipeline", "--region", region, "--project", gcp,
		"--format=value(spec.template.spec.containers[0].image)"); img != byDigest {
		t.Fatalf("after up without --image the service runs %s, want %s", img, byDigest)
	}
	cli("model", "deploy", name)
	// The alert policies were accepted by Monitoring (filters with their resource type).
	policies := sh("gcloud", "alpha", "monitoring", "policies", "list", "--project", gcp, "--format=value(displayName)")
	for _, want := range []string{"visionstack " + name + ": prediction drift", "visionstack " + name + ": model configuration errors"} {
		if !strings.Contains(policies, want) {
			t.Errorf("no alert policy %q:\n%s", want, policies)
		}
	}
	outputs := cli("outputs", name)
	var out struct {
		IncomingBucket, ProcessedBucket string
	}
	for _, l := range strings.Split(outputs, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "incomingBucket" {
			out.IncomingBucket = f[1]
		}
		if len(f) == 2 && f[0] == "processedBucket" {
			out.ProcessedBucket = f[1]
		}
	}
	if out.IncomingBucket == "" {
		t.Fatalf("outputs lack the buckets:\n%s", outputs)
	}
	sub := name + "-e2e-events"
	sh("gcloud", "pubsub", "subscriptions", "create", sub, "--topic", name+"-processed", "--project", gcp)
	defer sh("gcloud", "pubsub", "subscriptions", "delete", sub, "--project", gcp, "--quiet")
	sh("gcloud", "storage", "cp", "../../testdata/photos/faces/grace_hopper.jpg", "gs://"+out.IncomingBucket+"/e2e/grace.jpg")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		ls, _ := exec.Command("gcloud", "storage", "ls", "gs://"+out.ProcessedBucket+"/e2e/").CombinedOutput()
		if strings.Contains(string(ls), "grace.jpg") {
			break
		}
		time.Sleep(10 * time.Second)
	}
	if ctx.Err() != nil {
		t.Fatal("no processed output within 10 minutes: read the service's logs")
	}
	msgs := sh("gcloud", "pubsub", "subscriptions", "pull", sub, "--project", gcp, "--auto-ack", "--limit", "10", "--format=json")
	var pulled []map[string]any
	_ = json.Unmarshal([]byte(msgs), &pulled)
	if len(pulled) == 0 {
		t.Error("no processed event")
	}
	status := cli("status", name, "--backend", "cloud")
	if !strings.Contains(status, "1 done") {
		t.Errorf("status:\n%s", status)
	}
	// A sync call as an invoker would make it, with an ID token for the service.
	var url string
	for _, l := range strings.Split(outputs, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "serviceUrl" {
			url = f[1]
		}
	}
	tok := sh("gcloud", "auth", "print-identity-token", "--audiences", url)
	resp := sh("curl", "-sS", "-f", "-H", "Authorization: Bearer "+tok, "-H", "Content-Type: image/jpeg",
		"--data-binary", "@../../testdata/photos/faces/grace_hopper.jpg", url+"/v1/images:analyze")
	if !strings.Contains(resp, `"faces"`) {
		t.Errorf("sync call answered %s", resp)
	}
	// destroy, then the same name again: nothing may be left behind to collide with
	// (Firestore may hold a deleted database's name a few minutes: up is retried).
	cli("destroy", name, "--yes")
	deadline := time.Now().Add(15 * time.Minute)
	for {
		out, err := runCLI(t, "--root", root, "up", name)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second up of %s after destroy: %v\n%s", name, err, out)
		}
		time.Sleep(time.Minute)
	}
}
