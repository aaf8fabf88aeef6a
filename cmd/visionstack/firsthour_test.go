package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 28: what a newcomer's first runs say. A folder of one bad image and a text
// file: the text file is said to be left out, the bad image quarantined, the run exits
// 4 (nothing was processed); run again, the summary's counts still match the table
// (quarantined before this run, not "skipped"); with a good photo beside it, status 0
// unless --fail-on-quarantine.
func TestRunSummaryAndExitStatus(t *testing.T) {
	in := t.TempDir()
	must(t, os.WriteFile(filepath.Join(in, "broken.jpg"), []byte("not a jpeg at all"), 0o644))
	must(t, os.WriteFile(filepath.Join(in, "notes.txt"), []byte("shot on Tuesday"), 0o644))
	out := t.TempDir()
	for round := 1; round <= 2; round++ {
		text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != ExitQuarantined {
			t.Fatalf("round %d: %v, want exit status %d\n%s", round, err, ExitQuarantined, text)
		}
		if !strings.Contains(text, "left out 1 files whose names are not images'") || !strings.Contains(text, "notes.txt") {
			t.Errorf("round %d: the text file was left out without a word:\n%s", round, text)
		}
		rows := strings.Count(text, "  quarantined  ")
		want := "1 quarantined"
		if round == 2 {
			want = "1 quarantined (1 before this run)"
		}
		if rows != 1 || !strings.Contains(text, want) || strings.Contains(text, "1 skipped") {
			t.Errorf("round %d: %d quarantined rows; the summary should say %q:\n%s", round, rows, want, text)
		}
	}
	good, err := os.ReadFile("../../testdata/photos/faces/grace_hopper.jpg")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(in, "grace.jpg"), good, 0o644))
	if text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in); err != nil {
		t.Fatalf("a good photo beside the bad one: %v\n%s", err, text)
	}
	_, err = runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", "--fail-on-quarantine", in)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != ExitQuarantined {
		t.Fatalf("--fail-on-quarantine: %v, want exit status %d", err, ExitQuarantined)
	}
}

// visionstack version (and --version) says what a bug report needs.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"visionstack ", "commit ", "go          go1.", "libvips     8.", "onnxruntime "} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: no %q in\n%s", args, want, out)
			}
		}
	}
}

// Without credentials, the Google client's own words ("could not find default
// credentials") come with what to do.
func TestCredentialsErrorSaysWhatToDo(t *testing.T) {
	got := withHint(errors.New("status: firestore client: credentials: could not find default credentials. See https://cloud.google.com/docs/authentication/external/set-up-adc for more information"))
	if !strings.Contains(got, "gcloud auth application-default login") || !strings.Contains(got, "--backend local") {
		t.Errorf("%s", got)
	}
}

// new names every file it writes, in its output and its help.
func TestNewSaysEveryFile(t *testing.T) {
	root := t.TempDir()
	out, err := runCLI(t, "--root", root, "new", "acme-qa", "--gcp-project", "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	help, _ := runCLI(t, "new", "--help")
	for _, f := range []string{"projects/acme-qa/project.yaml", "projects/acme-qa/README.md", "projects/acme-qa/cloudbuild.yaml", ".github/workflows/deploy-acme-qa.yaml", "Pulumi.acme-qa.yaml"} {
		if !strings.Contains(out, "created "+f) {
			t.Errorf("new did not say it created %s:\n%s", f, out)
		}
		generic := strings.ReplaceAll(f, "acme-qa", "NAME")
		if !strings.Contains(strings.Join(strings.Fields(help), " "), generic) {
			t.Errorf("new --help does not name %s", generic)
		}
	}
	if !strings.Contains(out, "make install") {
		t.Errorf("the Next: hints use a bare visionstack without saying how to get it:\n%s", out)
	}
}
