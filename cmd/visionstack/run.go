package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/review"
)

type runOptions struct {
	project          string
	outDir           string
	workers          int
	noProgress       bool
	failOnQuarantine bool
	review           bool
	reviewAddr       string
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [--project NAME] [--out DIR] PATH...",
		Short: "Run the whole pipeline locally on image files or folders",
		Long: `run processes images on embedded defaults — no cloud: files are copied into
DIR/incoming, queued in a durable local queue, prepared, analyzed with the built-in
model, anonymized, stripped and downscaled into DIR/processed, and recorded in
DIR/visionstack.db. Bad images go to DIR/quarantine with the reason recorded.
A re-run skips every image already done (the key is the content hash); an
interrupted run resumes where it stopped. Files of a folder whose names are not
images' (notes.txt) are left out, and said so.
Exit status: 0 when the inputs were processed (some may be quarantined: the table
says why); 2 when some failed after retries; 4 when inputs were quarantined or not
read and none was processed, or with --fail-on-quarantine when any was.`,
		Example: "  visionstack run --project demo --out out/demo testdata/photos",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, args)
		},
	}
	cmd.Flags().StringVarP(&o.project, "project", "p", "demo", "project name (projects/NAME) or path of a project file")
	cmd.Flags().StringVarP(&o.outDir, "out", "o", "", "output directory (default out/NAME)")
	cmd.Flags().IntVarP(&o.workers, "workers", "w", runtime.GOMAXPROCS(0), "images processed at once")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress bar")
	cmd.Flags().BoolVar(&o.failOnQuarantine, "fail-on-quarantine", false, "exit with status 4 when any input is quarantined or not read (without it: only when no input was processed)")
	cmd.Flags().BoolVar(&o.review, "review", false, "after the run, serve the review page until Ctrl-C")
	cmd.Flags().StringVar(&o.reviewAddr, "review-addr", "127.0.0.1:8090", "where --review listens")
	return cmd
}

// summaryRow is one image in the table.
type summaryRow struct {
	object, state, detail string
	faces                 int
}

func (o *runOptions) run(ctx context.Context, g *globalOptions, paths []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	start := time.Now()
	cfg, _, err := g.loadProject(o.project)
	if err != nil {
		return err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join("out", cfg.Name)
	}
	inputs, ignored, err := localmode.FindInputsNoting(paths)
	if err != nil {
		return err
	}
	if len(ignored) > 0 {
		ex := ignored[:min(3, len(ignored))]
		fmt.Fprintf(g.out, "left out %d files whose names are not images' (%s%s): name a file on the command line to submit it anyway\n",
			len(ignored), strings.Join(ex, ", "), map[bool]string{true: ", …", false: ""}[len(ignored) > 3])
	}
	if len(inputs) == 0 {
		return fmt.Errorf("no image files (.jpg, .png, .webp, …) found in %s", strings.Join(paths, ", "))
	}
	imaging.Init(0)
	env, err := localmode.Open(cfg, o.outDir, localmode.Options{Workers: o.workers, Logger: g.logger()})
	if err != nil {
		return err
	}
	defer env.Close()

	var subs []localmode.Submitted
	todo := 0
	for _, in := range inputs {
		s, err := env.Submit(ctx, in)
		if err != nil {
			return err
		}
		subs = append(subs, s)
		if !s.Skipped && s.NotRead == "" {
			todo++
		}
	}
	// Also count tasks left queued by an interrupted earlier run.
	pending, err := env.Queue.Pending(ctx, localmode.WorkTopic)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if !o.noProgress && pending > 0 && isTerminal(g.errOut) {
		bar = progressbar.NewOptions(pending, progressbar.OptionSetWriter(g.errOut),
			progressbar.OptionSetDescription("processing"), progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionClearOnFinish())
	}
	// Tasks queued before this run (an interrupted run's, a local backfill's) are
	// worked off too; the summary says how many, since its table lists only the inputs.
	ours := map[string]bool{}
	for _, sub := range subs {
		ours[sub.Key] = true
	}
	var earlier atomic.Int64 // the queue's workers run handlers at once
	handler := func(ctx context.Context, m *queue.Message) error {
		err := env.Pipeline.Handle(ctx, m)
		if err == nil || queue.IsPermanent(err) || m.DeliveryAttempt >= cfg.Delivery.MaxAttempts {
			if bar != nil {
				_ = bar.Add(1)
			}
			if t, _, terr := pipeline.DecodeTask(m.Data, m.Attributes, env.Incoming.Name()); terr != nil || !ours[t.Key] {
				earlier.Add(1)
			}
		}
		return err
	}
	if err := env.Queue.Drain(ctx, localmode.WorkTopic, handler); err != nil {
		return err
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted; run the same command again to resume: %w", err)
	}
	sumErr := o.summarize(ctx, g.out, env, subs, todo, time.Since(start))
	if n := earlier.Load(); n > 0 {
		fmt.Fprintf(g.out, "also worked off %d tasks queued before this run (an interrupted run's or a backfill's); visionstack status lists their images\n", n)
	}
	if cfg.Monitoring.Drift != nil {
		hs, err := historiesOf(ctx, cfg, env.Meta)
		if err != nil {
			return err
		}
		printDrift(g.out, hs)
	}
	if o.review {
		if err := o.serveReview(ctx, g, cfg, env); err != nil {
			return err
		}
	}
	return sumErr
}

// serveReview serves the review page of the run until ctx ends (Ctrl-C).
func (o *runOptions) serveReview(ctx context.Context, g *globalOptions, cfg *config.Project, env *localmode.Env) error {
	h := review.New(review.Options{Project: cfg, Meta: env.Meta, Buckets: []blob.Bucket{env.Incoming, env.Processed, env.Quarantine}, Logger: g.logger()})
	mux := http.NewServeMux()
	mux.Handle("/review/", h)
	mux.Handle("GET /{$}", http.RedirectHandler("/review/", http.StatusFound))
	ln, err := net.Listen("tcp", o.reviewAddr)
	if err != nil {
		return fmt.Errorf("review page: listen on %s: %w (pick another with --review-addr)", o.reviewAddr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = hs.Close() }()
	fmt.Fprintf(g.out, "review page: http://%s/review/  (Ctrl-C to stop)\n", ln.Addr())
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (o *runOptions) summarize(ctx context.Context, w io.Writer, env *localmode.Env, subs []localmode.Submitted, todo int, took time.Duration) error {
	var rows []summaryRow
	var done, quarantined, quarantinedBefore, failed, skipped, notRead, faces int
	for _, s := range subs {
		row := summaryRow{object: s.Object}
		if s.NotRead != "" {
			row.state, row.detail = "not read", s.NotRead
			notRead++
			rows = append(rows, row)
			continue
		}
		j, err := env.Meta.Get(ctx, s.Key)
		switch {
		case errors.Is(err, meta.ErrNotFound):
			row.state, row.detail = "failed", "never processed: see the dead-letter queue"
			failed++
		case err != nil:
			return err
		case j.State == meta.StateDone:
			row.state = "done"
			if s.Skipped {
				row.state = "skipped"
				skipped++
			} else {
				done++
			}
			row.faces = countFaces(j)
			faces += row.faces
			for _, out := range j.Outputs {
				row.detail = filepath.Join(env.Dir, out.Bucket, out.Object)
			}
			if j.Source.Object != s.Object {
				row.detail = "same content as " + j.Source.Object
			}
		case j.State == meta.StateQuarantined:
			row.state, row.detail = "quarantined", j.Reason
			quarantined++ // this run's or an earlier one's: the table says quarantined either way
			if s.Skipped {
				quarantinedBefore++
			}
		default:
			row.state, row.detail = "failed", fmt.Sprintf("after %d attempts; re-run to retry", j.Attempts)
			failed++
		}
		rows = append(rows, row)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tSTATE\tFACES\tOUTPUT / REASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.object, r.state, r.faces, r.detail)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d images: %d processed, %d skipped (done before), %d quarantined", len(subs), done, skipped, quarantined)
	if quarantinedBefore > 0 {
		fmt.Fprintf(w, " (%d before this run)", quarantinedBefore)
	}
	fmt.Fprintf(w, ", %d failed", failed)
	if notRead > 0 {
		fmt.Fprintf(w, ", %d not read", notRead)
	}
	fmt.Fprintf(w, "; %d faces; %s\n", faces, took.Round(time.Millisecond))
	fmt.Fprintf(w, "outputs: %s  (processed/, quarantine/, visionstack.db)\n", env.Dir)
	if failed > 0 {
		return exitError{2, fmt.Errorf("%d images failed after retries", failed)}
	}
	// Exit status 4: inputs that were not processed (quarantined, not read) when no
	// input was, or with --fail-on-quarantine when any was: a script can tell.
	if bad := quarantined + notRead; bad > 0 && (done+skipped == 0 || o.failOnQuarantine) {
		return exitError{ExitQuarantined, fmt.Errorf("%d of %d inputs quarantined or not read: see the table's reasons", bad, len(subs))}
	}
	return nil
}

// ExitQuarantined is run's exit status when inputs were quarantined or not read and
// none was processed (or any was, with --fail-on-quarantine).
const ExitQuarantined = 4

// countFaces counts the boxes the run anonymized: detections labelled face.
func countFaces(j meta.Job) int {
	n := 0
	for _, r := range j.Results {
		for _, d := range r.Detections {
			if d.Box != nil && d.Label == "face" {
				n++
			}
		}
	}
	return n
}

// isTerminal reports whether w is a terminal: a progress bar redrawn in place is
// noise in a log file or a CI transcript.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
