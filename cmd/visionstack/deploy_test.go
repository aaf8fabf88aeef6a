package main

import (
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
