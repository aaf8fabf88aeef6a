// The Pulumi program: the stack name is the project name; the stack builds one
// visionstack:index:Project from projects/<stack>/project.yaml (or the file named
// by the visionstack:projectFile setting). The image comes from visionstack:image.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pconfig "github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/runtime/config"
)

func main() { pulumi.Run(program) }

func program(ctx *pulumi.Context) error {
	c := pconfig.New(ctx, "visionstack")
	file := c.Get("projectFile")
	if file == "" {
		file = filepath.Join("projects", ctx.Stack(), "project.yaml")
	}
	cfg, err := config.LoadFile(resolve(file))
	if err != nil {
		return fmt.Errorf("stack %s: %w", ctx.Stack(), err)
	}
	if cfg.Name != ctx.Stack() {
		return fmt.Errorf("stack %q builds project %q: name the stack after the project (pulumi stack select %s)", ctx.Stack(), cfg.Name, cfg.Name)
	}
	args := stack.Args{Image: c.Get("image"), KMSKey: c.Get("kmsKey")}
	if args.Image == "" {
		// No image given (a fresh clone has no stack config, or CI had no digest):
		// keep the one the last deployment ran, read from this stack's own outputs.
		// A stack never deployed has none, and gets the placeholder.
		self, err := pulumi.NewStackReference(ctx, fmt.Sprintf("%s/%s/%s", ctx.Organization(), ctx.Project(), ctx.Stack()), nil)
		if err != nil {
			return fmt.Errorf("read the image the stack deployed last: %w", err)
		}
		args.Deployed = self.GetOutput(pulumi.String("image"))
	}
	p, err := stack.NewProject(ctx, cfg, args)
	if err != nil {
		return err
	}
	ctx.Export("incomingBucket", p.IncomingBucket)
	ctx.Export("processedBucket", p.ProcessedBucket)
	ctx.Export("quarantineBucket", p.QuarantineBucket)
	ctx.Export("processedTopic", p.ProcessedTopic)
	ctx.Export("serviceUrl", p.ServiceURL)
	ctx.Export("endpointId", p.EndpointID)
	ctx.Export("repositoryUrl", p.RepositoryURL)
	ctx.Export("image", p.Image)
	return nil
}

// resolve finds a repository-relative path whether Pulumi runs the program from the
// repository root or from infra/.
func resolve(path string) string {
	if _, err := os.Stat(path); err == nil || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join("..", path)
}
