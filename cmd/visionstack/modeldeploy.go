package main

import (
	"context"
	"fmt"

	"cloud.google.com/go/storage"
	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/blob/gcs"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/model/vertex"
)

// stageModel readies the project's model block: with a model file, uploaded to the
// stack's model bucket for visionstack's image to serve (vertex.StageONNX).
func stageModel(ctx context.Context, cfg *config.Project, cl *closers.Stack) (config.ModelDeploy, error) {
	if cfg.Model.File == "" {
		return *cfg.Model, nil
	}
	sc, err := storage.NewClient(ctx)
	if err != nil {
		return *cfg.Model, fmt.Errorf("cloud storage client: %w", err)
	}
	cl.Add(sc.Close)
	return vertex.StageONNX(ctx, gcs.New(sc, cfg.Names().ModelBucket), cfg.Dir, *cfg.Model)
}

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
				return fmt.Errorf("projects/%s/project.yaml has no model block: add model: {image: …} (see docs/config-reference.md, model)", cfg.Name)
			}
			var cl closers.Stack
			defer cl.Close()
			c, err := openGCPClients(ctx, cfg.GCP.Region, &cl, false)
			if err != nil {
				return err
			}
			m, err := stageModel(ctx, cfg, &cl)
			if err != nil {
				return err
			}
			d, err := vertex.Deploy(ctx, c.models, c.endpoints, cfg.GCP.Project, cfg.GCP.Region,
				stack.EndpointID(cfg.GCP.Project, cfg.Name), m, g.out)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "model %s deployed as %s\n", d.Model, d.DeployedModelID)
			return nil
		},
	}
}
