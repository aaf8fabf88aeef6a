package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/model/vertex"
)

func newModelDeployCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "deploy NAME",
		Short: "Upload the project's model to Vertex AI and deploy it to the project's endpoint",
		Long: `model deploy reads the model block of projects/NAME/project.yaml (serving container
image, args, routes, artifacts, machine type, replicas), uploads it with the aiplatform
ModelService and deploys it to the endpoint the stack created, with all the traffic,
waiting on both long-running operations. Run it after visionstack up.`,
		Example: "  visionstack model deploy acme-defects",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			cfg, _, err := g.loadProject(args[0])
			if err != nil {
				return err
			}
			if cfg.Model == nil {
				return fmt.Errorf("projects/%s/project.yaml has no model block: add model: {image: …} (see README, Config reference)", cfg.Name)
			}
			var cl closers.Stack
			defer cl.Close()
			c, err := openGCPClients(ctx, cfg.GCP.Region, &cl, false)
			if err != nil {
				return err
			}
			d, err := vertex.Deploy(ctx, c.models, c.endpoints, cfg.GCP.Project, cfg.GCP.Region,
				stack.EndpointID(cfg.GCP.Project, cfg.Name), *cfg.Model, g.out)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "model %s deployed as %s\n", d.Model, d.DeployedModelID)
			return nil
		},
	}
}
