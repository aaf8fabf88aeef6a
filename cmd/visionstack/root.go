package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/config"
)

// globalOptions are flags every command has.
type globalOptions struct {
	root    string // repository root holding projects/
	verbose bool
	out     io.Writer
	errOut  io.Writer
}

func newRootCmd(out, errOut io.Writer) *cobra.Command {
	g := &globalOptions{out: out, errOut: errOut}
	cmd := &cobra.Command{
		Use:   "visionstack",
		Short: "Take a computer-vision model to production on Google Cloud, one project at a time",
		Long: `visionstack stamps out a per-project stack (Pulumi), runs the four-step image
pipeline (prepare, analyze, transform, act) locally or on Cloud Run, and serves models.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.PersistentFlags().StringVar(&g.root, "root", ".", "repository root that holds projects/")
	cmd.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log every step")
	cmd.AddCommand(newNewCmd(g), newValidateCmd(g), newRunCmd(g), newServeCmd(g), newModelCmd(g), newSchemaCmd(g), newStatusCmd(g), newReconcileCmd(g), newBackfillCmd(g))
	cmd.AddCommand(newDeployCmds(g)...)
	cmd.AddCommand(newVersionCmd(g))
	var version bool
	cmd.Flags().BoolVar(&version, "version", false, "print the version (as visionstack version)")
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		if version {
			fmt.Fprint(g.out, versionInfo())
			return nil
		}
		return c.Help()
	}
	return cmd
}

func (g *globalOptions) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: level}))
}

// projectFile resolves a project name, a project directory or a file path.
func (g *globalOptions) projectFile(arg string) (string, error) {
	if st, err := os.Stat(arg); err == nil {
		if st.IsDir() {
			return filepath.Join(arg, "project.yaml"), nil
		}
		return arg, nil
	}
	p := filepath.Join(g.root, "projects", arg, "project.yaml")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no project %q: expected %s; create one with `visionstack new %s --gcp-project P --region R`", arg, p, arg)
	}
	return p, nil
}

func (g *globalOptions) loadProject(arg string) (*config.Project, string, error) {
	file, err := g.projectFile(arg)
	if err != nil {
		return nil, "", err
	}
	p, err := config.LoadFile(file)
	if err != nil {
		return nil, file, err
	}
	return p, file, nil
}

// begin is the start of a command on a project: a context (cobra's, or a new one when
// the command runs outside Execute) and the project's config.
func (g *globalOptions) begin(ctx context.Context, name string) (context.Context, *config.Project, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, _, err := g.loadProject(name)
	return ctx, cfg, err
}

// beginStoppable is begin for a command that keeps its place in the metadata store
// (backfill, rollout): Ctrl-C or SIGTERM ends ctx, so it saves where it got to and a
// rerun or --resume goes on from there. stop releases the signals.
func (g *globalOptions) beginStoppable(ctx context.Context, name string) (_ context.Context, _ *config.Project, stop func(), _ error) {
	ctx, cfg, err := g.begin(ctx, name)
	if err != nil {
		return ctx, nil, func() {}, err
	}
	ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, cfg, stop, nil
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

func newSchemaCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of project files (for editors and CI)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := g.out.Write(config.SchemaJSON())
			return err
		},
	}
}
