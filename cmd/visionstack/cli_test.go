package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs the visionstack command with args and returns stdout+stderr.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out, &out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestNewStampsValidProjectAndRefusesOverwrite(t *testing.T) {
	root := t.TempDir()
	out, err := runCLI(t, "--root", root, "new", "acme-defects", "--gcp-project", "acme-prod", "--region", "europe-west3")
	if err != nil {
		t.Fatalf("new: %v\n%s", err, out)
	}
	for _, f := range []string{"projects/acme-defects/project.yaml", "projects/acme-defects/README.md", "Pulumi.acme-defects.yaml",
		".github/workflows/deploy-acme-defects.yaml", "projects/acme-defects/cloudbuild.yaml"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("new did not write %s", f)
		}
	}
	if out, err := runCLI(t, "--root", root, "validate", "acme-defects"); err != nil {
		t.Fatalf("stamped project fails validate: %v\n%s", err, out)
	}
	// Change the file, then try again: nothing may be overwritten.
	p := filepath.Join(root, "projects/acme-defects/project.yaml")
	if err := os.WriteFile(p, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "--root", root, "new", "acme-defects", "--gcp-project", "other-prod")
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second new = %v, want a refusal\n%s", err, out)
	}
	if b, _ := os.ReadFile(p); string(b) != "# mine\n" {
		t.Fatal("new overwrote an existing project file")
	}
}

func TestNewRejectsBadNameWithoutWriting(t *testing.T) {
	root := t.TempDir()
	_, err := runCLI(t, "--root", root, "new", "Bad_Name", "--gcp-project", "acme-prod")
	if err == nil || !strings.Contains(err.Error(), "lowercase") {
		t.Fatalf("new Bad_Name = %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("new left files behind: %v", entries)
	}
}

func TestValidatePrintsEveryProblemWithLines(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "project.yaml")
	bad := `apiVersion: visionstack/v1
kind: Project
name: ok-name
gcp: {project: acme-prod, region: europe-west3}
pipeline:
  prepare: {maxByte: 1MiB}
  analyses:
    - {name: faces, model: "builtin:faces", mode: sometimes}
`
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "validate", f)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("validate of a bad file = %v", err)
	}
	if !strings.Contains(out, f+`:6:13: pipeline.prepare: unknown key "maxByte" (did you mean "maxBytes"?)`) {
		t.Errorf("unknown key not reported with its line:\n%s", out)
	}
	// Semantic problems are checked once the file decodes.
	if err := os.WriteFile(f, []byte(strings.Replace(bad, "maxByte:", "maxBytes:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = runCLI(t, "validate", f)
	if !strings.Contains(out, f+`:8:`) || !strings.Contains(out, `"sometimes": use sync`) {
		t.Errorf("bad mode not reported with its line:\n%s", out)
	}
}

func TestValidateUnknownProjectSaysHowToCreate(t *testing.T) {
	out, err := runCLI(t, "--root", t.TempDir(), "validate", "nope")
	if err == nil || !strings.Contains(out, "visionstack new nope") {
		t.Fatalf("validate nope = %v\n%s", err, out)
	}
}

func TestRunWithoutImages(t *testing.T) {
	_, err := runCLI(t, "--root", "../..", "run", "--out", t.TempDir(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no image files") {
		t.Fatalf("run on an empty folder = %v", err)
	}
}

// Every user-facing command has its section in the hand-written guides (docs/*.md;
// docs/cli has the generated flag reference besides).
func TestDocsDocumentEveryCommand(t *testing.T) {
	pages, _ := filepath.Glob("../../docs/*.md")
	var readme []byte
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		readme = append(readme, b...)
	}
	var walk func(prefix string, cmds []*cobra.Command)
	walk = func(prefix string, cmds []*cobra.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
				continue
			}
			path := prefix + " " + c.Name()
			if c.HasSubCommands() {
				walk(path, c.Commands())
				continue
			}
			if !strings.Contains(string(readme), "`"+path) {
				t.Errorf("docs/ has no section for `%s`", path)
			}
		}
	}
	var out strings.Builder
	walk("visionstack", newRootCmd(&out, &out).Commands())
}
