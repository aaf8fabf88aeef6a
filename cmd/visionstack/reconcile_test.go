package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/testdata/photos"
)

// A job whose worker died, and whose message is gone, stays "processing" until
// `reconcile` re-queues it; the next run then finishes it.
func TestReconcileCommandRequeuesAnOrphanedJob(t *testing.T) {
	ctx := context.Background()
	out, in := t.TempDir(), t.TempDir()
	grace := mustReadBytes(t, filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	must(t, os.WriteFile(filepath.Join(in, "grace.jpg"), grace, 0o644))
	if o, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in); err != nil {
		t.Fatalf("run: %v\n%s", err, o)
	}

	// The orphan: stored and claimed by a worker that then died (kill -9), its
	// message lost to the dead letter and then purged by hand.
	orphan := mustReadBytes(t, filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	b, err := local.Open(filepath.Join(out, "incoming"), "incoming")
	must(t, err)
	a, err := b.Put(ctx, "orphan.jpg", orphan, blob.PutOptions{})
	must(t, err)
	b.Close()
	s, err := sqlite.Open(filepath.Join(out, "visionstack.db"))
	must(t, err)
	key := pipeline.ContentKey(orphan)
	_, err = s.Claim(ctx, key, meta.Source{Bucket: "incoming", Object: "orphan.jpg", Generation: a.Generation}, "dead-worker", time.Millisecond)
	must(t, err)
	s.Close()
	time.Sleep(5 * time.Millisecond)

	o, err := runCLI(t, "--root", "../..", "reconcile", "demo", "--data", out)
	if err != nil || !strings.Contains(o, "0 re-queued") {
		t.Fatalf("reconcile with the default --stale-after re-queued a job touched just now: %v\n%s", err, o)
	}
	o, err = runCLI(t, "--root", "../..", "reconcile", "demo", "--data", out, "--stale-after", "0", "--dry-run")
	if err != nil || !strings.Contains(o, "1 re-queued") || !strings.Contains(o, "dry run") {
		t.Fatalf("reconcile --dry-run: %v\n%s", err, o)
	}
	o, err = runCLI(t, "--root", "../..", "reconcile", "demo", "--data", out, "--stale-after", "0")
	if err != nil || !strings.Contains(o, "1 re-queued") || !strings.Contains(o, "orphan.jpg") {
		t.Fatalf("reconcile: %v\n%s", err, o)
	}
	t.Log("\n" + o)
	if o, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in); err != nil {
		t.Fatalf("run after reconcile: %v\n%s", err, o)
	}
	s, err = sqlite.Open(filepath.Join(out, "visionstack.db"))
	must(t, err)
	defer s.Close()
	if j, err := s.Get(ctx, key); err != nil || j.State != meta.StateDone || len(j.Outputs) != 1 {
		t.Fatalf("orphan after reconcile and run: %+v %v", j, err)
	}
}

func mustReadBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}
