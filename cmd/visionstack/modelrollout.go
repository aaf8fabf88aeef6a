package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	aiplatform "cloud.google.com/go/aiplatform/apiv1"
	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"github.com/spf13/cobra"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/rollout"
)

// APIHostEnv points the Vertex AI and Cloud Monitoring clients at a local gRPC
// server without TLS or credentials (tests; like the emulators' variables).
const APIHostEnv = "VISIONSTACK_GCP_API_HOST"

// gcpClients are the Vertex AI and Cloud Monitoring clients of a project's region.
type gcpClients struct {
	models    *aiplatform.ModelClient
	endpoints *aiplatform.EndpointClient
	metrics   *monitoring.MetricClient
}

func openGCPClients(ctx context.Context, region string, cl *closers.Stack, withMetrics bool) (gcpClients, error) {
	var c gcpClients
	vertexOpts := []option.ClientOption{option.WithEndpoint(region + "-aiplatform.googleapis.com:443")}
	var monOpts []option.ClientOption
	if host := os.Getenv(APIHostEnv); host != "" {
		local := []option.ClientOption{option.WithEndpoint(host), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
		vertexOpts, monOpts = local, local
	}
	var err error
	if c.models, err = aiplatform.NewModelClient(ctx, vertexOpts...); err != nil {
		return c, fmt.Errorf("model client: %w (are application default credentials set? gcloud auth application-default login)", err)
	}
	cl.Add(c.models.Close)
	if c.endpoints, err = aiplatform.NewEndpointClient(ctx, vertexOpts...); err != nil {
		return c, fmt.Errorf("endpoint client: %w", err)
	}
	cl.Add(c.endpoints.Close)
	if withMetrics {
		if c.metrics, err = monitoring.NewMetricClient(ctx, monOpts...); err != nil {
			return c, fmt.Errorf("monitoring client: %w", err)
		}
		cl.Add(c.metrics.Close)
	}
	return c, nil
}

type rolloutOptions struct {
	backend, dataDir            string
	canary                      int
	watch, interval, metricsLag time.Duration
	analysis                    string
	limits                      rollout.Limits
	resume                      bool
	shadow                      bool
	logFile                     string
}

func newModelRolloutCmd(g *globalOptions) *cobra.Command {
	o := &rolloutOptions{}
	cmd := &cobra.Command{
		Use:   "rollout NAME",
		Short: "Ship the project's model block as a new version: canary, watch, then promote or roll back on its own",
		Long: `model rollout uploads the model block of projects/NAME/project.yaml as a new version of
the model the endpoint serves (Vertex AI model versioning), deploys it beside the stable
version with --canary percent of the traffic, and watches both for --watch:
  - error ratio (canary over stable by more than --max-error-ratio: roll back),
  - p95 latency (canary over --max-latency-ratio times stable: roll back),
    both from Vertex AI's metrics of each deployed model;
  - the distance between their predictions, PSI on labels, boxes per image and
    confidences of --analysis, from the runtime's visionstack.predictions.* metrics
    (over --max-psi: roll back).
A plainly worse canary is rolled back at once; a healthy one is promoted to all the
traffic when the watch ends and the old version undeployed. Too little canary traffic
to judge is a rollback too: nothing unproven gets all the traffic.

Each step and decision, with its numbers, goes to --log (JSON lines) and to the
project's status (visionstack status NAME shows it). Interrupted anywhere, the endpoint
stays as the status says; model rollout --resume NAME finishes the rollout.`,
		Example: "  visionstack model rollout acme-defects --canary 10 --watch 2h --backend cloud\n" +
			"  visionstack model rollout acme-defects --resume --backend cloud",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, args[0])
		},
	}
	cmd.Flags().StringVar(&o.backend, "backend", "cloud", "where the rollout's state is kept: cloud (the project's Firestore) or local (--data)")
	cmd.Flags().StringVar(&o.dataDir, "data", "", "local backends directory (default out/NAME)")
	cmd.Flags().IntVar(&o.canary, "canary", 10, "percent of the endpoint's traffic the new version gets while watched")
	cmd.Flags().DurationVar(&o.watch, "watch", 30*time.Minute, "how long the canary is watched before it is promoted")
	cmd.Flags().DurationVar(&o.interval, "interval", time.Minute, "how often the canary is looked at")
	cmd.Flags().DurationVar(&o.metricsLag, "metrics-lag", 3*time.Minute, "how late metrics reach Cloud Monitoring: the last look waits this long after the watch")
	cmd.Flags().StringVar(&o.analysis, "analysis", "", "the analysis whose predictions are compared (default: the first using vertex:endpoint)")
	cmd.Flags().Int64Var(&o.limits.MinPredictions, "min-predictions", 100, "canary predictions needed to promote")
	cmd.Flags().Float64Var(&o.limits.MaxErrorRatio, "max-error-ratio", 0.02, "how far the canary's error ratio may exceed the stable one's")
	cmd.Flags().Float64Var(&o.limits.MaxLatencyRatio, "max-latency-ratio", 1.5, "canary p95 latency allowed, as a multiple of the stable one's")
	cmd.Flags().Float64Var(&o.limits.MaxPSI, "max-psi", config.DefaultDriftThreshold, "prediction distance (PSI) allowed between the versions")
	cmd.Flags().IntVar(&o.limits.MinImages, "min-images", 50, "images with recorded predictions of each version before the PSI counts (and to promote)")
	cmd.Flags().BoolVar(&o.resume, "resume", false, "finish the rollout in progress (after an interruption)")
	cmd.Flags().BoolVar(&o.shadow, "shadow", false, "deploy the new version to the analysis' shadow endpoint instead, judge it by its stored answers' agreement (--min-agreement), then take it off; the stable endpoint is not touched")
	cmd.Flags().Float64Var(&o.limits.MinAgreement, "min-agreement", 0.9, "with --shadow: detection agreement (F1) with the stable version needed")
	cmd.Flags().StringVar(&o.logFile, "log", "", "decision log, JSON lines (default out/NAME/rollout.log)")
	return cmd
}

func (o *rolloutOptions) run(ctx context.Context, g *globalOptions, name string) error {
	ctx, cfg, stop, err := g.beginStoppable(ctx, name)
	defer stop()
	if err != nil {
		return err
	}
	if cfg.Model == nil {
		return fmt.Errorf("projects/%s/project.yaml has no model block: add model: {image: …} with the new version's image (docs/models.md \"Ship a new model version\")", cfg.Name)
	}
	analysis := o.analysis
	for _, a := range cfg.Pipeline.Analyses {
		if analysis == "" && a.Model == "vertex:endpoint" {
			analysis = a.Name
		}
	}
	if analysis == "" {
		return errors.New("no analysis uses vertex:endpoint: name the one whose predictions to compare with --analysis")
	}
	shadowEndpoint := ""
	if o.shadow {
		if shadowEndpoint, err = shadowEndpointOf(cfg, analysis); err != nil {
			return err
		}
	}
	var cl closers.Stack
	defer cl.Close()
	store, err := openStateStore(ctx, cfg, o.backend, o.dataDir)
	if err != nil {
		return err
	}
	cl.Add(store.Close)
	c, err := openGCPClients(ctx, cfg.GCP.Region, &cl, true)
	if err != nil {
		return err
	}
	logPath := o.logFile
	if logPath == "" {
		logPath = filepath.Join("out", cfg.Name, "rollout.log")
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	staged := *cfg.Model
	if !o.resume { // a resumed rollout's version is uploaded already
		if staged, err = stageModel(ctx, cfg, &cl); err != nil {
			return err
		}
	}
	st, err := rollout.Run(ctx, rollout.Options{Models: c.models, Endpoints: c.endpoints, Metrics: c.metrics, State: store,
		Log: logf, Progress: g.out, Project: cfg.Name, GCPProject: cfg.GCP.Project, Region: cfg.GCP.Region,
		EndpointID: stack.EndpointID(cfg.GCP.Project, cfg.Name), Analysis: analysis, Model: staged,
		Canary: o.canary, Watch: o.watch, Interval: o.interval, MetricsLag: o.metricsLag, Limits: o.limits, Resume: o.resume, ShadowEndpoint: shadowEndpoint})
	if err != nil {
		return err
	}
	printRollout(g.out, st)
	fmt.Fprintf(g.out, "decision log: %s\n", logPath)
	switch {
	case st.Phase == rollout.PhaseRolledBack:
		return exitError{code: 3, err: fmt.Errorf("rolled back: %s", st.Decision)}
	case st.Phase == rollout.PhaseShadowed && !st.Agreed():
		return exitError{code: 3, err: fmt.Errorf("the shadow did not agree with the stable version: %s", st.Decision)}
	}
	return nil
}

// shadowEndpointOf is the Vertex endpoint an analysis names as its shadow.
func shadowEndpointOf(cfg *config.Project, analysis string) (string, error) {
	for _, a := range cfg.Pipeline.Analyses {
		if a.Name != analysis {
			continue
		}
		ref, err := config.ParseModel(a.Shadow)
		if a.Shadow == "" || err != nil || ref.Kind != config.ModelVertex || !strings.HasPrefix(ref.Target, "projects/") {
			return "", fmt.Errorf("--shadow deploys the new version to analysis %s's shadow endpoint: set shadow: \"vertex:projects/P/locations/L/endpoints/E\" on it (an endpoint of its own, e.g. gcloud ai endpoints create) and run visionstack up, so the runtime calls it", analysis)
		}
		return ref.Target, nil
	}
	return "", fmt.Errorf("no analysis %q in projects/%s/project.yaml", analysis, cfg.Name)
}

// openStateStore opens the metadata store that keeps a project's rollout state: the
// project's Firestore, or SQLite under the data directory (created if absent: a
// rollout needs no local run before it).
func openStateStore(ctx context.Context, cfg *config.Project, backend, dir string) (meta.Store, error) {
	if backend != "local" {
		s, _, err := (&statusOptions{backend: backend, dataDir: dir}).open(ctx, cfg)
		return s, err
	}
	if dir == "" {
		dir = filepath.Join("out", cfg.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s, err := sqlite.Open(filepath.Join(dir, "visionstack.db"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

func printRollout(w io.Writer, st rollout.State) {
	fmt.Fprintf(w, "rollout %s: %s\n", st.ID, st.Phase)
	fmt.Fprintf(w, "  stable %s (deployed model %s)\n  canary %s (deployed model %s, %d%%)\n", st.Stable.Model, st.Stable.DeployedModelID, st.Canary.Model, st.Canary.DeployedModelID, st.CanaryPct)
	if st.Decision != "" {
		fmt.Fprintf(w, "  decision: %s\n", st.Decision)
	}
}
