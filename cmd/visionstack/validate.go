package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/config"
)

func newValidateCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [NAME|PATH]...",
		Short: "Check project files; print every problem and exit non-zero on any",
		Long: `validate loads each project strictly (unknown keys, types, duplicate keys) and checks
its meaning (names, models, references between analyses and transforms, GCP limits).
Without arguments it checks every projects/*/project.yaml.`,
		Example: "  visionstack validate demo\n  visionstack validate projects/demo/project.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				files, _ := filepath.Glob(filepath.Join(g.root, "projects", "*", "project.yaml"))
				if len(files) == 0 {
					return fmt.Errorf("no projects/*/project.yaml under %s: pass a name or path", g.root)
				}
				sort.Strings(files)
				args = files
			}
			bad := 0
			for _, a := range args {
				p, file, err := g.loadProject(a)
				if err != nil {
					bad++
					var probs config.Problems
					if errors.As(err, &probs) {
						for _, pr := range probs {
							fmt.Fprintln(g.out, pr.String())
						}
						continue
					}
					fmt.Fprintln(g.out, err)
					continue
				}
				fmt.Fprintf(g.out, "ok %s (project %s, GCP %s/%s)\n", file, p.Name, p.GCP.Project, p.GCP.Region)
			}
			if bad > 0 {
				return exitError{1, fmt.Errorf("%d of %d project files have problems", bad, len(args))}
			}
			return nil
		},
	}
}
