package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/infra/stack/stacktest"
	"github.com/visionstack/visionstack/templates"
)

// A project stamped the way `visionstack new foo` stamps it builds a stack: the
// program finds projects/foo/project.yaml from the stack name and every resource is
// named after foo.
func TestNewProjectBuildsItsStack(t *testing.T) {
	root := t.TempDir()
	files, err := templates.Render(templates.Params{Name: "foo", GCPProject: "foo-prod", Region: "europe-west1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(root)
	m := &stacktest.Mocks{}
	if err := pulumi.RunErr(program, pulumi.WithMocks("visionstack", "foo", m)); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"foo-prod-foo-incoming": false, "foo-pipeline": false, "foo-uploaded": false, "foo-meta": false}
	for _, r := range m.Res {
		if n := r.Inputs["name"]; n.IsString() {
			if _, ok := want[n.StringValue()]; ok {
				want[n.StringValue()] = true
			}
		}
		if a := r.Inputs["accountId"]; a.IsString() && a.StringValue() == "foo-pipeline" {
			want["foo-pipeline"] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("no resource named %s", name)
		}
	}
	if len(m.Res) < 40 {
		t.Errorf("only %d resources", len(m.Res))
	}
}

func TestStackMustBeNamedAfterProject(t *testing.T) {
	t.Chdir("..")
	t.Setenv("PULUMI_CONFIG", `{"visionstack:projectFile":"projects/demo/project.yaml"}`)
	err := pulumi.RunErr(program, pulumi.WithMocks("visionstack", "other", &stacktest.Mocks{}))
	if err == nil {
		t.Fatal("a stack named other built project demo")
	}
}
