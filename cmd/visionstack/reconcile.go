package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/queue/local"
	"github.com/visionstack/visionstack/runtime/queue/pubsub"
	"github.com/visionstack/visionstack/runtime/reconcile"
)

type reconcileOptions struct {
	backend     string
	dataDir     string
	staleAfter  time.Duration
	maxRequeues int
	dryRun      bool
}

func newReconcileCmd(g *globalOptions) *cobra.Command {
	o := &reconcileOptions{}
	cmd := &cobra.Command{
		Use:   "reconcile [NAME]",
		Short: "Re-queue stuck jobs and dead letters that can still run; report the rest",
		Long: `reconcile makes one pass over a project's work that delivery alone will not finish:
  - jobs still "processing" whose claim ran out more than --stale-after ago (a worker
    died and its message was dead-lettered, or a sync job's task was never queued);
  - messages in the dead-letter subscription.
A dead letter whose job is final is removed. One whose job can still run is re-queued
on the work topic, at most --max-requeues times; after that, and for messages the
service did not write, it stays in the dead letter and is reported. serve runs the
same pass every --reconcile-every. Locally it reads out/NAME (or --data); with
--backend cloud, the project's Firestore database and Pub/Sub (honouring the
emulator variables).`,
		Example: "  visionstack reconcile demo --dry-run\n  visionstack reconcile demo --backend cloud",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, nameArg(g, args))
		},
	}
	backendFlags(cmd, &o.backend, &o.dataDir, "Firestore and Pub/Sub")
	cmd.Flags().DurationVar(&o.staleAfter, "stale-after", reconcile.DefaultStaleAfter, "a processing job untouched this long past its lease is stuck")
	cmd.Flags().IntVar(&o.maxRequeues, "max-requeues", reconcile.DefaultMaxRequeues, "re-queues of one message before it is only reported")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "say what would be done; change nothing")
	return cmd
}

func (o *reconcileOptions) run(ctx context.Context, g *globalOptions, name string) error {
	ctx, cfg, err := g.begin(ctx, name)
	if err != nil {
		return err
	}
	var cl closers.Stack
	defer cl.Close()
	ro, where, err := reconcileBackends(ctx, cfg, o.backend, o.dataDir, &cl)
	if err != nil {
		return err
	}
	ro.StaleAfter, ro.MaxRequeues, ro.DryRun, ro.Logger = o.staleAfter, o.maxRequeues, o.dryRun, slog.New(slog.DiscardHandler)
	if o.staleAfter == 0 {
		ro.StaleAfter = time.Nanosecond // 0 means "every expired claim", not the default
	}
	r, err := reconcile.Run(ctx, ro)
	if err != nil {
		return err
	}
	printReconcile(g.out, cfg.Name, where, r, o.dryRun)
	return nil
}

// reconcileBackends opens the store and queue the reconciler needs (not the models).
func reconcileBackends(ctx context.Context, cfg *config.Project, backend, dir string, cl *closers.Stack) (reconcile.Options, string, error) {
	s, where, err := (&statusOptions{backend: backend, dataDir: dir}).open(ctx, cfg)
	if err != nil {
		return reconcile.Options{}, "", err
	}
	cl.Add(s.Close)
	var q interface {
		queue.Publisher
		queue.Sweeper
	}
	switch backend {
	case "local":
		if dir == "" {
			dir = filepath.Join("out", cfg.Name)
		}
		lq, err := local.Open(filepath.Join(dir, "queue.db"), local.Options{MaxAttempts: cfg.Delivery.MaxAttempts})
		if err != nil {
			return reconcile.Options{}, "", err
		}
		cl.Add(lq.Close)
		q = lq
	default: // cloud: open vetted the backend
		pc, err := ps.NewClient(ctx, cfg.GCP.Project)
		if err != nil {
			return reconcile.Options{}, "", fmt.Errorf("pubsub client: %w", err)
		}
		cl.Add(pc.Close)
		pq := pubsub.New(pc, cfg.GCP.Project, nil)
		cl.Add(pq.Close)
		q = pq
		where += ", dead letter " + cfg.Names().DeadLetterSub
	}
	o := reconcileTargets(cfg, backend, "incoming")
	o.Meta, o.Publisher, o.DeadLetters = s, q, q
	return o, where, nil
}

// reconcileTargets says where a project's reconciler re-queues and which dead letter
// it sweeps: the local queue's topics, or the stack's topic and subscription. The
// local incoming bucket is named by the caller (localmode names it "incoming").
func reconcileTargets(cfg *config.Project, backend, localIncoming string) reconcile.Options {
	o := reconcile.Options{MaxAttempts: cfg.Delivery.MaxAttempts}
	if backend == "local" {
		o.WorkTopic, o.DeadLetterSub, o.Incoming, o.Trusted = localmode.WorkTopic, localmode.WorkTopic+local.DeadLetterSuffix, localIncoming, true
		return o
	}
	n := cfg.Names()
	o.WorkTopic = "projects/" + cfg.GCP.Project + "/topics/" + n.UploadedTopic
	o.DeadLetterSub = "projects/" + cfg.GCP.Project + "/subscriptions/" + n.DeadLetterSub
	o.Incoming = n.IncomingBucket
	return o
}

func printReconcile(w io.Writer, project, where string, r reconcile.Report, dry bool) {
	verb := ""
	if dry {
		verb = " (dry run: nothing changed)"
	}
	fmt.Fprintf(w, "reconcile %s — %s%s\n", project, where, verb)
	for _, it := range r.Items {
		what := it.Key
		if it.Object != "" {
			what += " (" + it.Object + ")"
		}
		fmt.Fprintf(w, "  %-8s %-11s %s: %s\n", it.Action, it.Kind, what, it.Why)
	}
	fmt.Fprintf(w, "%d re-queued, %d removed (already final), %d reported (need a person)\n",
		r.Count(reconcile.Requeued), r.Count(reconcile.Removed), r.Count(reconcile.Reported))
}
