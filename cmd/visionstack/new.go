package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/templates"
)

type newOptions struct {
	gcpProject string
	region     string
}

func newNewCmd(g *globalOptions) *cobra.Command {
	o := &newOptions{}
	cmd := &cobra.Command{
		Use:   "new NAME --gcp-project P --region R",
		Short: "Create projects/NAME/ (and Pulumi.NAME.yaml) from templates/",
		Long: `new stamps the templates into five files: projects/NAME/project.yaml (the project
file), projects/NAME/README.md, projects/NAME/cloudbuild.yaml (Cloud Build: image and
deploy), .github/workflows/deploy-NAME.yaml (GitHub Actions: preview on pull requests,
up on main) and Pulumi.NAME.yaml (the stack's config) at the repository root. It
refuses to overwrite anything, and the project it writes passes validate.`,
		Example: "  visionstack new acme-defects --gcp-project acme-prod --region europe-west3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.gcpProject, "gcp-project", "", "Google Cloud project id (required)")
	cmd.Flags().StringVar(&o.region, "region", "europe-west3", "Google Cloud region")
	_ = cmd.MarkFlagRequired("gcp-project")
	return cmd
}

func (o *newOptions) run(g *globalOptions, name string) error {
	files, err := templates.Render(templates.Params{Name: name, GCPProject: o.gcpProject, Region: o.region})
	if err != nil {
		return err
	}
	// Validate before writing anything: a bad name must not leave files behind.
	for _, f := range files {
		if filepath.Base(f.Path) == "project.yaml" {
			if _, err := config.Load(f.Path, f.Data); err != nil {
				return fmt.Errorf("the project would not be valid:\n%w", err)
			}
		}
	}
	var exists []string
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(g.root, f.Path)); err == nil {
			exists = append(exists, f.Path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if dir := filepath.Join(g.root, "projects", name); len(exists) == 0 {
		if _, err := os.Stat(dir); err == nil {
			exists = append(exists, filepath.Join("projects", name))
		}
	}
	if len(exists) > 0 {
		return fmt.Errorf("refusing to overwrite %v: pick another name or remove them first", exists)
	}
	for _, f := range files {
		p := filepath.Join(g.root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// O_EXCL: even a file created since the check above is never overwritten.
		fh, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if _, err := fh.Write(f.Data); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
		fmt.Fprintf(g.out, "created %s\n", f.Path)
	}
	fmt.Fprintf(g.out, "\nNext (visionstack is bin/visionstack until `make install`):\n  visionstack validate %s\n  visionstack run --project %s PATH-TO-PHOTOS\n  visionstack up %s   # needs the Pulumi CLI and GCP credentials: docs/deploy.md\n", name, name, name)
	return nil
}
