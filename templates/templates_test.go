package templates_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/visionstack/visionstack/templates"
)

// Every stamped YAML file parses, and the CI files deploy the project they were
// stamped for.
func TestRenderedFilesParse(t *testing.T) {
	files, err := templates.Render(templates.Params{Name: "foo", GCPProject: "foo-prod", Region: "europe-west1"})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]string{}
	for _, f := range files {
		byPath[f.Path] = string(f.Data)
		if strings.HasSuffix(f.Path, ".yaml") {
			var v any
			if err := yaml.Unmarshal(f.Data, &v); err != nil {
				t.Errorf("%s is not valid YAML: %v", f.Path, err)
			}
		}
	}
	wf := byPath[".github/workflows/deploy-foo.yaml"]
	for _, want := range []string{"visionstack up $PROJECT --image", "visionstack preview $PROJECT", "id-token: write", "${{ vars.WIF_PROVIDER }}", "PROJECT: foo"} {
		if !strings.Contains(wf, want) {
			t.Errorf("workflow lacks %q", want)
		}
	}
	cb := byPath["projects/foo/cloudbuild.yaml"]
	if !strings.Contains(cb, "visionstack up ${_PROJECT}") || !strings.Contains(cb, "europe-west1-docker.pkg.dev/foo-prod/foo/visionstack") {
		t.Errorf("cloudbuild.yaml:\n%s", cb)
	}
}

// The first CI run of a new project creates the stack (and so its Artifact Registry
// repository) with the placeholder image before it pushes: a push to a repository
// that does not exist fails.
func TestFirstCIRunCreatesTheRegistryBeforePushing(t *testing.T) {
	files, err := templates.Render(templates.Params{Name: "foo", GCPProject: "foo-prod", Region: "europe-west1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var push, bootstrap string
		switch f.Path {
		case ".github/workflows/deploy-foo.yaml":
			push, bootstrap = "docker push", "visionstack up $PROJECT --if-new\n"
		case "projects/foo/cloudbuild.yaml":
			push, bootstrap = "args: [push,", "visionstack up ${_PROJECT} --if-new\n"
		default:
			continue
		}
		s := string(f.Data)
		b, p := strings.Index(s, bootstrap), strings.Index(s, push)
		if b < 0 || p < 0 || b > p {
			t.Errorf("%s: the first `up` without --image (at %d) must come before the push (at %d)", f.Path, b, p)
		}
		// Gated on "never deployed" (--if-new), not on a lookup that fails for any
		// reason: a transient failure took the bootstrap branch and deployed the
		// placeholder over the pipeline.
		if strings.Contains(s, "artifacts repositories describe") {
			t.Errorf("%s: the bootstrap is gated on a registry lookup", f.Path)
		}
		// apt-get install without apt-get update fails on a fresh runner's empty lists.
		for i, line := range strings.Split(s, "\n") {
			if strings.Contains(line, "apt-get install") && !strings.Contains(line, "apt-get update") {
				t.Errorf("%s:%d: apt-get install without apt-get update first: %s", f.Path, i+1, strings.TrimSpace(line))
			}
		}
		if f.Path == "projects/foo/cloudbuild.yaml" {
			// $SHORT_SHA is empty on a manual build (gcloud builds submit): the tag
			// would be "visionstack:".
			if strings.Contains(s, "SHORT_SHA}") {
				t.Errorf("%s: tags images with $SHORT_SHA", f.Path)
			}
			// The bootstrap `up` is not for preview builds (pull requests).
			if !strings.Contains(s, `[ "${_MODE}" = up ] || exit 0`) {
				t.Errorf("%s: the bootstrap runs in preview mode too", f.Path)
			}
		}
	}
}
