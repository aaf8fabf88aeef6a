package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/visionstack/visionstack/testdata/photos"
)

// A named pipe called .jpg among the inputs, and a file run cannot read: run never
// opens the pipe (opening it would block until something writes), finishes, and
// says why it left each out. Symbolic links to photos are followed.
func TestRunSkipsWhatIsNotARegularFile(t *testing.T) {
	in := t.TempDir()
	src := filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg")
	data, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(in, "good.jpg"), data, 0o644))
	must(t, syscall.Mkfifo(filepath.Join(in, "x.jpg"), 0o644))
	must(t, os.Symlink(src, filepath.Join(in, "linked.jpg")))
	must(t, os.Symlink(filepath.Join(in, "nowhere.jpg"), filepath.Join(in, "dangling.jpg")))
	out := filepath.Join(t.TempDir(), "out")

	type result struct {
		stdout string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		stdout, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
		done <- result{stdout, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		// Unblock the open so the goroutine can end, then fail.
		if f, err := os.OpenFile(filepath.Join(in, "x.jpg"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("run blocked on a named pipe")
	}
	if r.err != nil {
		t.Fatalf("run: %v\n%s", r.err, r.stdout)
	}
	t.Log("\n" + r.stdout)
	for _, want := range []string{
		"4 images: 2 processed, 0 skipped (done before), 0 quarantined, 0 failed, 2 not read",
		"not a regular file (named pipe)",
		"cannot read: no such file or directory",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// Distinct files are distinct images whatever their names: x/p.jpg and y/p.jpg named
// on the command line, a.png and a.jpg in one folder. Each is processed and has an
// output of its own (before, one of the first pair ended "superseded" and a.png's
// output replaced a.jpg's).
func TestRunDistinctFilesWithClashingNames(t *testing.T) {
	in := t.TempDir()
	copyPhoto := func(src, dst string) {
		data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", src))
		must(t, err)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		must(t, os.WriteFile(dst, data, 0o644))
	}
	copyPhoto("grace_hopper.jpg", filepath.Join(in, "x", "p.jpg"))
	copyPhoto("faceapi_sample1.jpg", filepath.Join(in, "y", "p.jpg"))
	copyPhoto("astronaut.png", filepath.Join(in, "z", "a.png"))
	copyPhoto("faceapi_sample2.jpg", filepath.Join(in, "z", "a.jpg"))
	out := filepath.Join(t.TempDir(), "out")
	stdout, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress",
		filepath.Join(in, "x", "p.jpg"), filepath.Join(in, "y", "p.jpg"), filepath.Join(in, "z"))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "4 images: 4 processed, 0 skipped (done before), 0 quarantined, 0 failed") {
		t.Fatalf("summary:\n%s", stdout)
	}
	var outputs []string
	must(t, filepath.WalkDir(filepath.Join(out, "processed"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, ".visionstack-meta") {
			outputs = append(outputs, p)
		}
		return err
	}))
	if len(outputs) != 4 {
		t.Fatalf("%d outputs, want 4: %v\n%s", len(outputs), outputs, stdout)
	}
}

// Photos in formats run does not read (an iPhone's HEIC, AVIF) in a folder are
// neither left out silently nor called broken: each is quarantined with its format
// named and what to do.
func TestRunNamesPhotoFormatsItCannotRead(t *testing.T) {
	in := t.TempDir()
	must(t, os.WriteFile(filepath.Join(in, "phone.heic"), []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), 0o644))
	must(t, os.WriteFile(filepath.Join(in, "web.avif"), []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"), 0o644))
	out := filepath.Join(t.TempDir(), "out")
	// Nothing was processed: exit status 4, the reasons in the table.
	text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != ExitQuarantined {
		t.Fatalf("run: %v, want exit status %d", err, ExitQuarantined)
	}
	says(t, text,
		"2 images: 0 processed, 0 skipped (done before), 2 quarantined",
		"format not allowed: heif (allowed: [jpeg png webp]; convert it to one of those first)",
		"format not allowed: avif")
}

// Tasks a local backfill queued are worked off by the next run, which says so: its
// table lists only the inputs named, so without the line the work would go unseen.
func TestRunCountsTasksQueuedBefore(t *testing.T) {
	in := t.TempDir()
	for _, name := range []string{"grace_hopper.jpg", "camera.png"} {
		data, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", name))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(in, name), data, 0o644))
	}
	out := filepath.Join(t.TempDir(), "out")
	mustRunCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
	mustRunCLI(t, "--root", "../..", "backfill", "demo", "--backend", "local", "--data", out, "--version", "other")
	says(t, mustRunCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", filepath.Join(photos.Dir(), "faces", "astronaut.png")),
		"1 images: 1 processed",
		"also worked off 2 tasks queued before this run (an interrupted run's or a backfill's)")
}

// mustRunCLI runs the CLI and returns its output, failing the test on an error.
func mustRunCLI(t *testing.T, args ...string) string {
	t.Helper()
	stdout, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stdout)
	}
	t.Log("\n" + stdout)
	return stdout
}

// says fails the test for each line the output lacks.
func says(t *testing.T, stdout string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
