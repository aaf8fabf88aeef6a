package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/backfill"
	"github.com/visionstack/visionstack/runtime/blob/gcs"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	qlocal "github.com/visionstack/visionstack/runtime/queue/local"
	"github.com/visionstack/visionstack/runtime/queue/pubsub"
)

type backfillOptions struct {
	backend, dataDir    string
	prefix, fromVersion string
	version             string
	rate                float64
	restart, dryRun     bool
	noProgress          bool
	progressEvery       time.Duration
}

func newBackfillCmd(g *globalOptions) *cobra.Command {
	o := &backfillOptions{}
	cmd := &cobra.Command{
		Use:   "backfill NAME",
		Short: "Run stored images through the pipeline again for a new model version",
		Long: `backfill queues images already stored for the model version --version: every
object under --prefix of the incoming bucket, or (--from-version OLD) every image whose
job a model of version OLD produced. It publishes one task per image to the work topic,
so the push path does the work at its usual scale: Cloud Run and Pub/Sub with
--backend cloud, the local durable queue (processed by visionstack serve) locally.

Each task's key is the image's key with the version, so an image is processed once per
version however often it is queued; an image the version already processed is skipped
and reported, as is anything that is not an image to process. Where the run got to is
kept in the metadata store: run the same command again after an interruption and it
resumes there (--restart starts over). --rate bounds tasks a second, so a backfill does
not crowd out live traffic.`,
		Example: "  visionstack backfill demo --version blazeface-back/2 --prefix 2026/ --rate 20\n" +
			"  visionstack backfill demo --version 2 --from-version 1 --backend cloud",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, args[0])
		},
	}
	backendFlags(cmd, &o.backend, &o.dataDir, "Cloud Storage, Pub/Sub and Firestore")
	cmd.Flags().StringVar(&o.version, "version", "", "model version the images are processed for (default: the built-in model's, when every analysis uses it)")
	cmd.Flags().StringVar(&o.prefix, "prefix", "", "objects of the incoming bucket under this prefix (default: all)")
	cmd.Flags().StringVar(&o.fromVersion, "from-version", "", "instead of objects: the images whose jobs this model version produced")
	cmd.Flags().Float64Var(&o.rate, "rate", 0, "tasks published a second (0: no limit)")
	cmd.Flags().BoolVar(&o.restart, "restart", false, "ignore where an earlier run got to")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "count and report; queue nothing")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress output")
	cmd.Flags().DurationVar(&o.progressEvery, "progress-every", 5*time.Second, "without a terminal: how often a progress line is printed")
	return cmd
}

func (o *backfillOptions) run(ctx context.Context, g *globalOptions, name string) error {
	ctx, cfg, stop, err := g.beginStoppable(ctx, name)
	defer stop()
	if err != nil {
		return err
	}
	if o.prefix != "" && o.fromVersion != "" {
		return errors.New("--prefix and --from-version choose different images: give one")
	}
	if o.rate < 0 {
		return errors.New("--rate must be 0 (no limit) or more")
	}
	if o.version == "" {
		if !onlyBuiltin(cfg) {
			return errors.New("say which model version the images are processed for: --version V (the version your endpoint serves now, as results record it)")
		}
		o.version = builtin.Version
	}
	var cl closers.Stack
	defer cl.Close()
	bo, where, err := o.backends(ctx, cfg, &cl)
	if err != nil {
		return err
	}
	bo.Prefix, bo.FromVersion, bo.Version, bo.Rate, bo.Restart, bo.DryRun = o.prefix, o.fromVersion, o.version, o.rate, o.restart, o.dryRun
	if !o.noProgress {
		bo.Progress = progressPrinter(g.errOut, o.progressEvery)
	}
	fmt.Fprintf(g.out, "backfill %s for model version %s — %s\n", cfg.Name, o.version, where)
	rep, err := backfill.Run(ctx, bo)
	if errors.Is(err, backfill.ErrNoVersion) {
		return err
	}
	printBackfill(g.out, rep, o.dryRun)
	if err != nil && rep.Published+len(rep.Skipped) > 0 {
		return fmt.Errorf("%w\nrun the same command again to resume after the last image queued", err)
	}
	return err
}

// onlyBuiltin: every analysis uses the built-in model, whose version is known here.
func onlyBuiltin(cfg *config.Project) bool {
	return len(cfg.Pipeline.Analyses) > 0 && !slices.ContainsFunc(cfg.Pipeline.Analyses, func(a config.Analysis) bool { return a.Model != "builtin:faces" })
}

// backends opens the incoming bucket, the work topic's publisher and the metadata store.
func (o *backfillOptions) backends(ctx context.Context, cfg *config.Project, cl *closers.Stack) (backfill.Options, string, error) {
	s, where, err := (&statusOptions{backend: o.backend, dataDir: o.dataDir}).open(ctx, cfg)
	if err != nil {
		return backfill.Options{}, "", err
	}
	cl.Add(s.Close)
	bo := backfill.Options{Meta: s}
	switch o.backend {
	case "local":
		dir := o.dataDir
		if dir == "" {
			dir = filepath.Join("out", cfg.Name)
		}
		in, err := local.Open(filepath.Join(dir, "incoming"), "incoming")
		if err != nil {
			return bo, "", err
		}
		q, err := qlocal.Open(filepath.Join(dir, "queue.db"), qlocal.Options{MaxAttempts: cfg.Delivery.MaxAttempts})
		if err != nil {
			return bo, "", err
		}
		cl.Add(q.Close)
		bo.Incoming, bo.Publisher, bo.Topic, bo.ContentKeys, bo.MaxBytes = in, q, localmode.WorkTopic, true, int64(cfg.Pipeline.Prepare.MaxBytes)
		return bo, where + "; tasks go to the local queue (visionstack serve " + cfg.Name + " processes them)", nil
	default: // cloud: open vetted the backend
		sc, err := storage.NewClient(ctx)
		if err != nil {
			return bo, "", fmt.Errorf("storage client: %w", err)
		}
		cl.Add(sc.Close)
		pc, err := ps.NewClient(ctx, cfg.GCP.Project)
		if err != nil {
			return bo, "", fmt.Errorf("pubsub client: %w", err)
		}
		cl.Add(pc.Close)
		q := pubsub.New(pc, cfg.GCP.Project, nil)
		cl.Add(q.Close)
		n := cfg.Names()
		bo.Incoming, bo.Publisher = gcs.New(sc, n.IncomingBucket), q
		bo.Topic = "projects/" + cfg.GCP.Project + "/topics/" + n.UploadedTopic
		return bo, fmt.Sprintf("%s; bucket %s, topic %s", where, n.IncomingBucket, n.UploadedTopic), nil
	}
}

// progressPrinter draws a bar on a terminal, and a line every `every` elsewhere.
func progressPrinter(w io.Writer, every time.Duration) func(backfill.Progress) {
	var bar *progressbar.ProgressBar
	var last time.Time
	return func(p backfill.Progress) {
		if isTerminal(w) {
			if bar == nil { // a spinner until the scope is counted
				bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("backfill"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
			}
			if p.Total > 0 && bar.GetMax() != p.Total {
				bar.ChangeMax(p.Total)
			}
			_ = bar.Set(p.Done)
			return
		}
		if (p.Total == 0 || p.Done < p.Total) && time.Since(last) < every {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "backfill: %s\n", progressLine(p))
	}
}

func progressLine(p backfill.Progress) string {
	line := fmt.Sprintf("%d of the images still being counted", p.Done)
	if p.Total > 0 {
		line = fmt.Sprintf("%d/%d (%.0f%%)", p.Done, p.Total, 100*float64(p.Done)/float64(p.Total))
	}
	line += fmt.Sprintf(", %d queued, %d skipped", p.Published, p.Skipped)
	if p.Resumed > 0 {
		line += fmt.Sprintf(", %d done by an earlier run", p.Resumed)
	}
	if p.Rate > 0 {
		line += fmt.Sprintf(", %.1f/s", p.Rate)
		if p.Total > 0 {
			line += fmt.Sprintf(", ETA %s", p.ETA.Round(time.Second))
		}
	}
	return line
}

// printBackfill reports the run, skips grouped by reason (a few examples each).
func printBackfill(w io.Writer, r backfill.Report, dry bool) {
	verb := "queued"
	if dry {
		verb = "would queue (dry run: nothing queued)"
	}
	fmt.Fprintf(w, "%d images in scope: %d %s, %d skipped, %d handled by an earlier run (cursor %s)\n",
		r.Total, r.Published, verb, r.Progress.Skipped, r.Resumed, r.Cursor)
	groups := slices.Clone(r.Skipped)
	sort.Slice(groups, func(i, j int) bool { return groups[i].Why < groups[j].Why })
	for _, g := range groups {
		fmt.Fprintf(w, "  skipped %d: %s", g.Count, g.Why)
		if g.Count > len(g.Examples) {
			fmt.Fprintf(w, " (e.g. %v …)\n", g.Examples)
		} else {
			fmt.Fprintf(w, " %v\n", g.Examples)
		}
	}
}
