package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/infra/stack"
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

// An `up` without an image keeps what the service runs: a fresh clone has no stack
// config, and the placeholder would answer 200 to every push and lose it. Only a
// stack never deployed gets the placeholder.
func TestUpWithoutImageKeepsTheDeployedOne(t *testing.T) {
	t.Chdir("..")
	const deployed = "europe-west3-docker.pkg.dev/acme/demo/visionstack@sha256:1111"
	const given = "europe-west3-docker.pkg.dev/acme/demo/visionstack@sha256:2222"
	for _, c := range []struct {
		name     string
		config   string
		previous map[string]string
		want     string
	}{
		{"no image, deployed before", `{"visionstack:projectFile":"projects/demo/project.yaml"}`, map[string]string{"image": deployed, "serviceUrl": "https://x"}, deployed},
		{"no image, never deployed", `{"visionstack:projectFile":"projects/demo/project.yaml"}`, nil, stack.PlaceholderImage},
		{"an image given", `{"visionstack:projectFile":"projects/demo/project.yaml","visionstack:image":"` + given + `"}`, map[string]string{"image": deployed}, given},
	} {
		t.Setenv("PULUMI_CONFIG", c.config)
		m := &stacktest.Mocks{Deployed: c.previous}
		if err := pulumi.RunErr(program, pulumi.WithMocks("visionstack", "demo", m)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		svc := m.Of("gcp:cloudrunv2/service:Service")
		if len(svc) != 1 {
			t.Fatalf("%s: %d services", c.name, len(svc))
		}
		got := svc[0].Inputs["template"].ObjectValue()["containers"].ArrayValue()[0].ObjectValue()["image"]
		if !got.IsString() || got.StringValue() != c.want {
			t.Errorf("%s: the service runs %v, want %s", c.name, got, c.want)
		}
	}
}
