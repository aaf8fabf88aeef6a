package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/config"
)

// errNoPulumi says how to get the CLI the Automation API drives.
var errNoPulumi = errors.New("the pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/), log in to a backend (pulumi login, or pulumi login --local), then run this again")

type deployOptions struct {
	image string
	yes   bool
	ifNew bool
}

// newDeployCmds returns preview, up, destroy and outputs: the project's stack driven
// through Pulumi's Automation API from the repository root (Pulumi.yaml, infra/).
func newDeployCmds(g *globalOptions) []*cobra.Command {
	o := &deployOptions{}
	mk := func(use, short string, run func(ctx context.Context, s auto.Stack, cfg *config.Project) error) *cobra.Command {
		cmd := &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx := cmd.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				s, cfg, err := o.stack(ctx, g, args[0])
				if err != nil {
					return err
				}
				return run(ctx, s, cfg)
			},
		}
		cmd.Flags().StringVar(&o.image, "image", "", "pipeline image by digest (sets visionstack:image)")
		return cmd
	}
	preview := mk("preview", "Show what `up` would change in the project's stack", func(ctx context.Context, s auto.Stack, _ *config.Project) error {
		_, err := s.Preview(ctx, optpreview.ProgressStreams(g.out), optpreview.ErrorProgressStreams(g.errOut))
		return err
	})
	up := mk("up", "Create or update the project's stack", func(ctx context.Context, s auto.Stack, cfg *config.Project) error {
		if o.ifNew {
			out, err := s.Outputs(ctx)
			if err != nil {
				return fmt.Errorf("--if-new: cannot tell whether stack %s was deployed: %w", cfg.Name, err)
			}
			if deployed(out) {
				fmt.Fprintf(g.out, "stack %s is deployed already: nothing to do for --if-new\n", cfg.Name)
				return nil
			}
		}
		res, err := s.Up(ctx, optup.ProgressStreams(g.out), optup.ErrorProgressStreams(g.errOut))
		if err != nil {
			return err
		}
		printOutputs(g, res.Outputs)
		return nil
	})
	up.Flags().BoolVar(&o.ifNew, "if-new", false, "only if the stack was never deployed (CI's bootstrap before the first image push); fails when that cannot be told")
	destroy := mk("destroy", "Delete the project's stack (buckets and the Firestore database are protected)", func(ctx context.Context, s auto.Stack, cfg *config.Project) error {
		if !o.yes {
			return fmt.Errorf("destroy deletes the %s stack of GCP project %s: pass --yes to confirm", cfg.Name, cfg.GCP.Project)
		}
		_, err := s.Destroy(ctx, optdestroy.ProgressStreams(g.out), optdestroy.ErrorProgressStreams(g.errOut))
		return err
	})
	destroy.Flags().BoolVar(&o.yes, "yes", false, "confirm the deletion")
	outputs := mk("outputs", "Print the stack's outputs (buckets, topic, service URL, endpoint)", func(ctx context.Context, s auto.Stack, _ *config.Project) error {
		out, err := s.Outputs(ctx)
		if err != nil {
			return err
		}
		printOutputs(g, out)
		return nil
	})
	return []*cobra.Command{preview, up, destroy, outputs}
}

// stack validates the project, finds the pulumi CLI and selects (creating) the stack.
func (o *deployOptions) stack(ctx context.Context, g *globalOptions, name string) (auto.Stack, *config.Project, error) {
	cfg, _, err := g.loadProject(name)
	if err != nil {
		return auto.Stack{}, nil, err
	}
	if _, err := exec.LookPath("pulumi"); err != nil {
		return auto.Stack{}, nil, errNoPulumi
	}
	root, err := filepath.Abs(g.root)
	if err != nil {
		return auto.Stack{}, nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "Pulumi.yaml")); err != nil {
		return auto.Stack{}, nil, fmt.Errorf("no Pulumi.yaml in %s: run from the repository root or pass --root", root)
	}
	s, err := auto.UpsertStackLocalSource(ctx, cfg.Name, root)
	if err != nil {
		return auto.Stack{}, nil, fmt.Errorf("select stack %s: %w", cfg.Name, err)
	}
	settings := map[string]string{"gcp:project": cfg.GCP.Project, "gcp:region": cfg.GCP.Region,
		"visionstack:projectFile": filepath.ToSlash(filepath.Join("projects", cfg.Name, "project.yaml"))}
	if o.image != "" {
		settings["visionstack:image"] = o.image
	}
	for k, v := range settings {
		if err := s.SetConfig(ctx, k, auto.ConfigValue{Value: v}); err != nil {
			return auto.Stack{}, nil, fmt.Errorf("set %s: %w", k, err)
		}
	}
	return s, cfg, nil
}

// deployed says whether a stack's outputs are those of a deployment: a stack never
// deployed has none (every deployment exports the buckets, the service URL…).
func deployed(out auto.OutputMap) bool { return len(out) > 0 }

func printOutputs(g *globalOptions, out auto.OutputMap) {
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(g.out, "%-18s %v\n", k, out[k].Value)
	}
}
