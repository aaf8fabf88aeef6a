package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/auto"

	"errors"
	"strings"
	"testing"
)

func TestDeployCommandsCheckArgumentsAndCLI(t *testing.T) {
	for _, verb := range []string{"preview", "up", "destroy", "outputs"} {
		if _, err := runCLI(t, "--root", "../..", verb); err == nil || !strings.Contains(err.Error(), "accepts 1 arg") {
			t.Errorf("%s without NAME: %v", verb, err)
		}
		if _, err := runCLI(t, "--root", "../..", verb, "nope"); err == nil || !strings.Contains(err.Error(), "visionstack new nope") {
			t.Errorf("%s of an unknown project: %v", verb, err)
		}
		// No pulumi on PATH: a clear error that says how to install it.
		t.Setenv("PATH", t.TempDir())
		if _, err := runCLI(t, "--root", "../..", verb, "demo"); !errors.Is(err, errNoPulumi) {
			t.Errorf("%s without the pulumi CLI: %v", verb, err)
		}
	}
}

func TestModelDeployNeedsAModelBlock(t *testing.T) {
	_, err := runCLI(t, "--root", "../..", "model", "deploy", "demo")
	if err == nil || !strings.Contains(err.Error(), "no model block") {
		t.Fatalf("model deploy without a model block: %v", err)
	}
}

// `up --if-new` (CI's bootstrap) runs only on a stack that has never been deployed:
// one with no outputs. A deployed stack always has them.
func TestIfNewTellsADeployedStack(t *testing.T) {
	if deployed(auto.OutputMap{}) {
		t.Error("a stack with no outputs counts as deployed: the bootstrap would never run")
	}
	if !deployed(auto.OutputMap{"serviceUrl": {Value: "https://x"}}) {
		t.Error("a deployed stack counts as new: the bootstrap would deploy the placeholder over it")
	}
}
