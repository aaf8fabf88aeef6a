package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
)

const runChildEnv = "VISIONSTACK_RUN_CHILD"

// `run` killed with kill -9 in the middle, then started again: the second run
// finishes every image within a minute (the dead process's queue leases and job
// claims run out in 30 s instead of the 300 s ack deadline), each image once.
func TestRunResumesPromptlyAfterKill9(t *testing.T) {
	runChildIfAsked(runChildEnv)
	in := t.TempDir()
	n := reencode(t, in)
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"--root", "../..", "run", "--project", "demo", "--out", out, "--workers", "2", "--no-progress", in}

	child := exec.Command(os.Args[0], "-test.run=^TestRunResumesPromptlyAfterKill9$")
	child.Env = append(os.Environ(), runChildEnv+"="+strings.Join(args, "\x1f"))
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once some images are done and others are in flight.
	deadline := time.Now().Add(90 * time.Second)
	for doneCount(t, out) < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	must(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	before := doneCount(t, out)
	if before >= n {
		t.Fatalf("the first run finished all %d images before the kill", n)
	}

	start := time.Now()
	stdout, err := runCLI(t, args...)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stdout)
	}
	t.Logf("killed after %d of %d images; the second run finished in %v\n%s", before, n, took.Round(time.Second), stdout)
	if !strings.Contains(stdout, fmt.Sprintf("%d images:", n)) || !strings.Contains(stdout, "0 quarantined, 0 failed") {
		t.Fatalf("second run:\n%s", stdout)
	}
	if took > time.Minute {
		t.Errorf("the second run took %v, want under a minute", took)
	}
	if got := doneCount(t, out); got != n {
		t.Errorf("%d jobs done, want %d", got, n)
	}
	outs, err := filepath.Glob(filepath.Join(out, "processed", filepath.Base(in), "*"))
	must(t, err)
	if len(outs) != n {
		t.Errorf("%d processed files, want one per image (%d): %v", len(outs), n, outs)
	}
}

// runChildIfAsked makes this test process the CLI when env names its arguments
// (separated by \x1f): the child a test starts so that it can kill it. It exits.
func runChildIfAsked(env string) {
	args := os.Getenv(env)
	if args == "" {
		return
	}
	cmd := newRootCmd(os.Stdout, os.Stderr)
	cmd.SetArgs(strings.Split(args, "\x1f"))
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "visionstack:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// doneCount counts final jobs in a run's database (0 before it exists).
func doneCount(t *testing.T, out string) int {
	db := filepath.Join(out, "visionstack.db")
	if _, err := os.Stat(db); err != nil {
		return 0
	}
	s, err := sqlite.Open(db)
	if err != nil {
		return 0
	}
	defer s.Close()
	jobs, err := s.List(context.Background(), meta.Filter{State: meta.StateDone})
	if err != nil {
		return 0
	}
	return len(jobs)
}
