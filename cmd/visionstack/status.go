package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	fs "cloud.google.com/go/firestore"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/firestore"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/rollout"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

type statusOptions struct {
	backend      string
	dataDir      string
	limit        int
	baselineYAML bool
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show a project's recent jobs and its prediction drift",
		Long: `status reads the project's metadata store — out/NAME/visionstack.db locally,
the project's Firestore database with --backend cloud — and prints the recent jobs by
state and, with monitoring.drift set, the drift of each watched analysis: the figures the
service exports as visionstack.drift.psi, replayed from the store. With
--baseline-yaml it prints the frozen baseline as a monitoring.drift.baseline block, to
pin it in the project file.`,
		Example: "  visionstack status demo\n  visionstack status demo --backend cloud\n  visionstack status demo --baseline-yaml",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, nameArg(g, args))
		},
	}
	backendFlags(cmd, &o.backend, &o.dataDir, "Firestore")
	cmd.Flags().IntVar(&o.limit, "limit", 1000, "latest jobs counted")
	cmd.Flags().BoolVar(&o.baselineYAML, "baseline-yaml", false, "print the drift baseline as a project file block")
	return cmd
}

func (o *statusOptions) run(ctx context.Context, g *globalOptions, name string) error {
	ctx, cfg, err := g.begin(ctx, name)
	if err != nil {
		return err
	}
	store, where, err := o.open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	w := g.out
	hs, err := historiesOf(ctx, cfg, store)
	if err != nil {
		return err
	}
	if o.baselineYAML {
		return printBaselines(w, cfg, hs)
	}
	jobs, err := store.List(ctx, meta.Filter{Limit: o.limit})
	if err != nil {
		return err
	}
	byState := map[meta.State]int{}
	for _, j := range jobs {
		byState[j.State]++
	}
	fmt.Fprintf(w, "project %s — %s\n", cfg.Name, where)
	var states []string
	for s, n := range byState {
		states = append(states, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(states)
	if len(states) == 0 {
		states = []string{"none yet"}
	}
	fmt.Fprintf(w, "jobs (latest %d): %s\n", o.limit, strings.Join(states, ", "))
	printDrift(w, hs)
	switch st, err := rollout.Load(ctx, store, cfg.Name); {
	case err == nil:
		printRollout(w, st)
		if !st.Final() {
			fmt.Fprintf(w, "  in progress since %s: the endpoint is as above; finish it with visionstack model rollout %s --resume\n", st.Updated.Format(time.RFC3339), cfg.Name)
		}
	case !errors.Is(err, meta.ErrNotFound):
		return err
	}
	return nil
}

// printDrift says how each watched analysis' predictions compare with their
// baseline.
func printDrift(w io.Writer, hs []*drift.History) {
	if len(hs) == 0 {
		fmt.Fprintln(w, "drift: not monitored (set monitoring.drift in the project file)")
		return
	}
	for _, h := range hs {
		printHistory(w, h)
	}
}

func printHistory(w io.Writer, h *drift.History) {
	fmt.Fprintf(w, "drift of analysis %q", h.Analysis)
	if h.Version != "" {
		fmt.Fprintf(w, ", model version %s", h.Version)
	}
	fmt.Fprintf(w, " (threshold %.2f, window %d images", h.Threshold, h.Window)
	if h.Baseline != nil {
		fmt.Fprintf(w, ", baseline: %s", h.Baseline.Source)
	}
	fmt.Fprintln(w, "):")
	last := h.Last()
	switch {
	case h.Baseline == nil:
		fmt.Fprintf(w, "  collecting the baseline: %d of %d images\n", h.Monitor.Collected(), h.BaselineImages)
	case !last.Settled(h.Window):
		fmt.Fprintf(w, "  %d images since the baseline; figures start at %d\n", last.Window, (h.Window+1)/2)
	default:
		verdict := "stable"
		if last.Drifted {
			verdict = "DRIFTED: the model's outputs moved away from the baseline"
		}
		fmt.Fprintf(w, "  PSI %.3f (labels %.3f, boxes/image %.3f, confidence %.3f)  KS %.3f  window %d images\n  %s\n",
			last.PSI, last.PSILabels, last.PSIBoxes, last.PSIConf, last.KS, last.Window, verdict)
	}
}

// historiesOf replays each watched analysis' drift (none without monitoring.drift).
func historiesOf(ctx context.Context, cfg *config.Project, store meta.Store) ([]*drift.History, error) {
	var hs []*drift.History
	for _, d := range cfg.Monitoring.Drift.Each() {
		h, err := drift.Load(ctx, store, d, d.Window)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// printBaselines prints each frozen baseline as a monitoring.drift.baseline block.
func printBaselines(w io.Writer, cfg *config.Project, hs []*drift.History) error {
	printed := 0
	for _, h := range hs {
		if h.Baseline == nil {
			continue
		}
		out, err := yaml.Marshal(map[string]any{"baseline": h.Baseline.ToConfig()})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# monitoring.drift of %s: %s of analysis %s\n%s", cfg.Name, h.Baseline.Source, h.Analysis, out)
		printed++
	}
	if printed == 0 {
		return fmt.Errorf("no drift baseline yet: set monitoring.drift and process baselineImages images")
	}
	return nil
}

// open opens the project's metadata store.
func (o *statusOptions) open(ctx context.Context, cfg *config.Project) (meta.Store, string, error) {
	switch o.backend {
	case "local":
		dir := o.dataDir
		if dir == "" {
			dir = filepath.Join("out", cfg.Name)
		}
		db := filepath.Join(dir, "visionstack.db")
		if _, err := os.Stat(db); err != nil {
			return nil, "", fmt.Errorf("no local run of %s in %s: run `visionstack run --project %s PATH` first, or pass --data DIR", cfg.Name, dir, cfg.Name)
		}
		s, err := sqlite.Open(db)
		return s, "local backends in " + dir, err
	case "cloud":
		db := envOr("VISIONSTACK_FIRESTORE_DATABASE", cfg.Names().Database)
		c, err := fs.NewClientWithDatabase(ctx, cfg.GCP.Project, db)
		if err != nil {
			return nil, "", fmt.Errorf("firestore client: %w", err)
		}
		return firestore.New(c), fmt.Sprintf("Firestore database %s of GCP project %s", db, cfg.GCP.Project), nil
	}
	return nil, "", fmt.Errorf("--backend %q: use local or cloud", o.backend)
}

// nameArg is the project an optional NAME argument names; without one, the project
// whose file was changed last (the one just created with new, not demo), said so.
func nameArg(g *globalOptions, args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	name := defaultProject(g.root)
	fmt.Fprintf(g.errOut, "project %s: the most recently changed projects/*/project.yaml (name another as the command's argument)\n", name)
	return name
}

// defaultProject is the project under root/projects whose project.yaml changed last
// ("demo" when there is none).
func defaultProject(root string) string {
	files, _ := filepath.Glob(filepath.Join(root, "projects", "*", "project.yaml"))
	best, newest := "demo", time.Time{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(newest) {
			best, newest = filepath.Base(filepath.Dir(f)), st.ModTime()
		}
	}
	return best
}

// backendFlags are --backend and --data of the commands that read a project's stores.
func backendFlags(cmd *cobra.Command, backend, dataDir *string, cloud string) {
	cmd.Flags().StringVar(backend, "backend", "local", "local (files and SQLite under --data) or cloud ("+cloud+"; the emulator variables are honoured)")
	cmd.Flags().StringVar(dataDir, "data", "", "local backends directory (default out/NAME)")
}
