package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/onnx"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/api/idtoken"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/cloudmode"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/models"
	"github.com/visionstack/visionstack/runtime/modelserver"
	"github.com/visionstack/visionstack/runtime/reconcile"
	"github.com/visionstack/visionstack/runtime/review"
	"github.com/visionstack/visionstack/runtime/server"
	"github.com/visionstack/visionstack/runtime/telemetry"
)

type serveOptions struct {
	pushAudience    string
	pushSA          string
	backend         string
	project         string
	addr            string
	dataDir         string
	inflightPixels  int64
	shutdownTimeout time.Duration
	logFormat       string
	review          string
	reviewOn        bool
	tel             *telemetry.Telemetry
	cloudTelemetry  string
	reconcileEvery  time.Duration
	insecurePush    bool
	port            string
}

func newServeCmd(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [--project NAME] [--addr HOST:PORT]",
		Short: "Run the pipeline service: sync API, Pub/Sub push endpoint, health",
		Long: `serve is the Cloud Run entrypoint. It answers
  POST /v1/images:analyze   raw image bytes or a multipart file: the sync analyses, at once
  POST /v1/pubsub/push      Pub/Sub push deliveries (GCS notifications or queued tasks)
  GET  /healthz, /readyz
  GET  /metrics             Prometheus metrics (Cloud Monitoring too with --backend cloud)
  GET  /review/             the review page (--review; on by default locally)
--backend cloud (the default on Cloud Run) uses the project's Cloud Storage buckets,
Pub/Sub topics and Firestore database, named as the stack names them; the clients
honour STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST.
--backend local uses files, SQLite and an in-process queue under --data, with a worker
that drains it. On SIGTERM it stops taking work, finishes what is in flight within
--shutdown-timeout and exits.`,
		Example: "  visionstack serve --project demo --addr 127.0.0.1:8080\n  curl -s --data-binary @photo.jpg -H 'Content-Type: image/jpeg' localhost:8080/v1/images:analyze",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), g)
		},
	}
	o.port = os.Getenv("PORT") // Cloud Run sets it
	if o.port == "" {
		o.port = "8080"
	}
	backend := "local"
	if os.Getenv("K_SERVICE") != "" {
		backend = "cloud"
	}
	cmd.Flags().StringVar(&o.backend, "backend", backend, "local or cloud (default cloud on Cloud Run)")
	cmd.Flags().StringVar(&o.pushAudience, "push-audience", os.Getenv("VISIONSTACK_PUSH_AUDIENCE"), "verify push OIDC tokens for this audience ($VISIONSTACK_PUSH_AUDIENCE)")
	cmd.Flags().StringVar(&o.pushSA, "push-service-account", os.Getenv("VISIONSTACK_PUSH_SERVICE_ACCOUNT"), "the push subscription's service account ($VISIONSTACK_PUSH_SERVICE_ACCOUNT)")
	cmd.Flags().StringVarP(&o.project, "project", "p", envOr("VISIONSTACK_PROJECT", "demo"), "project name or file ($VISIONSTACK_PROJECT)")
	cmd.Flags().StringVar(&o.addr, "addr", "", "listen address (default 127.0.0.1:$PORT locally, :$PORT with --backend cloud; $PORT defaults to 8080)")
	cmd.Flags().BoolVar(&o.insecurePush, "insecure-push", false, "with --backend cloud, accept push deliveries without a verified OIDC token (emulators and tests only)")
	cmd.Flags().StringVar(&o.dataDir, "data", "", "local backends directory (default out/NAME)")
	cmd.Flags().Int64Var(&o.inflightPixels, "max-inflight-pixels", -1, "decoded pixels in flight before 429s (default: from serving.memory; 0: no limit)")
	cmd.Flags().DurationVar(&o.shutdownTimeout, "shutdown-timeout", 9*time.Second, "time to finish in-flight work after SIGTERM (Cloud Run allows 10s)")
	cmd.Flags().StringVar(&o.logFormat, "log-format", defaultLogFormat(), "json (Cloud Logging) or text")
	cmd.Flags().StringVar(&o.review, "review", "auto", "serve the review page on /review/: on, off, auto (on for --backend local; off in the cloud, where it would show every image to whoever may call the service)")
	cmd.Flags().DurationVar(&o.reconcileEvery, "reconcile-every", 5*time.Minute, "re-queue stuck jobs and dead letters this often (see `visionstack reconcile`; 0: never)")
	cmd.Flags().StringVar(&o.cloudTelemetry, "cloud-telemetry", "auto", "export metrics to Cloud Monitoring and traces to Cloud Trace: on, off, auto (on for --backend cloud)")
	return cmd
}

// onOff reads an on/off/auto flag.
func onOff(flag, v string, auto bool) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	case "auto", "":
		return auto, nil
	}
	return false, fmt.Errorf("--%s %q: use on, off or auto", flag, v)
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// defaultLogFormat is JSON on Cloud Run (K_SERVICE is set there), text elsewhere.
func defaultLogFormat() string {
	if os.Getenv("K_SERVICE") != "" {
		return "json"
	}
	return "text"
}

// serviceLogger logs JSON with Cloud Logging's fields (severity, message, trace,
// spanId, httpRequest, the image key) or text; traces are named in gcpProject.
func (g *globalOptions) serviceLogger(format, gcpProject string) *slog.Logger {
	return telemetry.NewLogger(g.errOut, format, gcpProject, slog.LevelInfo)
}

func (o *serveOptions) run(ctx context.Context, g *globalOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, _, err := g.loadProject(o.project)
	if err != nil {
		return err
	}
	if o.backend != "local" && o.backend != "cloud" {
		return fmt.Errorf("--backend %q: use local or cloud", o.backend)
	}
	cloudTel, err := onOff("cloud-telemetry", o.cloudTelemetry, o.backend == "cloud")
	if err != nil {
		return err
	}
	reviewOn, err := onOff("review", o.review, o.backend == "local")
	if err != nil {
		return err
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:" + o.port // locally nobody else needs to reach it
		if o.backend == "cloud" {
			o.addr = ":" + o.port
		}
	}
	if o.backend == "cloud" {
		// Checked before any client opens: a misconfigured service must not start.
		if o.pushAudience == "" && !o.insecurePush {
			return fmt.Errorf("push authentication is off: anyone who can reach /v1/pubsub/push could queue work. " +
				"Set --push-audience and --push-service-account (the stack sets $VISIONSTACK_PUSH_AUDIENCE and $VISIONSTACK_PUSH_SERVICE_ACCOUNT), " +
				"or pass --insecure-push against emulators")
		}
		if reviewOn && cfg.Serving.Public {
			return fmt.Errorf("--review on with serving.public: true would show every image to anyone on the internet; turn one of them off")
		}
	}
	gcpProject := ""
	if cloudTel {
		gcpProject = cfg.GCP.Project
	}
	log := g.serviceLogger(o.logFormat, gcpProject)
	switch {
	case o.backend == "cloud" && o.pushAudience == "":
		log.Warn("push authentication is OFF (--insecure-push): /v1/pubsub/push accepts deliveries from anyone who can reach the service")
	case o.backend == "local" && !loopback(o.addr):
		log.Warn("listening beyond this machine with no authentication: the sync API, the push endpoint and the review page are open to the network", "addr", o.addr)
	}
	tel, err := telemetry.New(ctx, telemetry.Options{Project: cfg.Name, GCPProject: gcpProject})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry flush", "err", err)
		}
	}()
	o.tel, o.reviewOn = tel, reviewOn
	imaging.Init(0)
	if o.inflightPixels < 0 {
		o.inflightPixels = server.PixelBudget(cfg.Serving.MemoryBytes())
	}
	log.Info("admission control", "maxInflightPixels", o.inflightPixels, "memory", cfg.Serving.Memory)
	adm := server.NewAdmission(o.inflightPixels, 2*time.Second)
	// A delivery may wait for room up to half its ack deadline (the rest is for the
	// work): a 429 would spend one of its attempts.
	adm.SetDeliveryWait(cfg.Delivery.AckDeadline.Duration / 2)
	if o.backend == "cloud" {
		return o.serveCloud(ctx, cfg, log, adm)
	}
	return o.serveLocal(ctx, cfg, log, adm)
}

func (o *serveOptions) serveLocal(ctx context.Context, cfg *config.Project, log *slog.Logger, adm *server.Admission) error {
	if o.dataDir == "" {
		o.dataDir = filepath.Join("out", cfg.Name)
	}
	env, err := localmode.Open(cfg, o.dataDir, localmode.Options{Logger: log, Admit: adm.Admit, Telemetry: o.tel})
	if err != nil {
		return err
	}
	defer env.Close()
	p := env.Pipeline
	srv := server.New(server.Options{Pipeline: p, Incoming: env.Incoming, Publisher: env.Queue, WorkTopic: localmode.WorkTopic,
		Admission: adm, MaxBody: int64(cfg.Pipeline.Prepare.MaxBytes), Logger: log,
		Metrics: o.tel.MetricsHandler(), Review: o.reviewHandler(cfg, env.Meta, log, adm, env.Incoming, env.Processed, env.Quarantine)})

	// Locally there is no push subscription: a worker drains the in-process queue.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan error, 1)
	go func() { workerDone <- env.Queue.Receive(workCtx, localmode.WorkTopic, p.Handle) }()
	ro := reconcileTargets(cfg, "local", env.Incoming.Name())
	ro.Meta, ro.Publisher, ro.DeadLetters = env.Meta, env.Queue, env.Queue
	stopReconciler := o.startReconciler(ctx, log, ro)
	return listenAndServe(ctx, o.addr, srv, serviceLimits(cfg.Delivery.AckDeadline.Duration), o.shutdownTimeout, log, srv.Drain, func() {
		stopReconciler()
		stopWork()
		<-workerDone
	}, fmt.Sprintf("project %s, local backends in %s", cfg.Name, o.dataDir))
}

func (o *serveOptions) serveCloud(ctx context.Context, cfg *config.Project, log *slog.Logger, adm *server.Admission) error {
	ms, closeModels, err := models.Build(ctx, cfg, models.Options{})
	if err != nil {
		return err
	}
	defer closeModels()
	env, err := cloudmode.Open(ctx, cfg, cloudmode.Options{Models: ms, Logger: log, Admit: adm.Admit,
		Database: os.Getenv("VISIONSTACK_FIRESTORE_DATABASE"), Telemetry: o.tel})
	if err != nil {
		return err
	}
	defer env.Close()
	auth, err := o.pushAuth(ctx, cfg)
	if err != nil {
		return err
	}
	srv := server.New(server.Options{Pipeline: env.Pipeline, Incoming: env.Incoming, Publisher: env.Queue,
		WorkTopic: "projects/" + cfg.GCP.Project + "/topics/" + env.WorkTopic, PushAuth: auth,
		Admission: adm, MaxBody: int64(cfg.Pipeline.Prepare.MaxBytes), Logger: log,
		Metrics: o.tel.MetricsHandler(), Review: o.reviewHandler(cfg, env.Meta, log, adm, env.Incoming, env.Processed, env.Quarantine)})
	ro := reconcileTargets(cfg, "cloud", "")
	ro.Meta, ro.Publisher, ro.DeadLetters = env.Meta, env.Queue, env.Queue
	stopReconciler := o.startReconciler(ctx, log, ro)
	return listenAndServe(ctx, o.addr, srv, serviceLimits(cfg.Delivery.AckDeadline.Duration), o.shutdownTimeout, log, srv.Drain, stopReconciler,
		fmt.Sprintf("project %s on GCP project %s (buckets %s…, topic %s)", cfg.Name, cfg.GCP.Project, env.Names.IncomingBucket, env.WorkTopic))
}

// startReconciler runs a reconcile pass every --reconcile-every (the first one after
// a random part of it, so instances started together do not sweep together) until
// the returned stop is called. On Cloud Run it runs only while the instance has CPU;
// a scheduled `visionstack reconcile --backend cloud` covers an idle service.
func (o *serveOptions) startReconciler(ctx context.Context, log *slog.Logger, ro reconcile.Options) (stop func()) {
	if o.reconcileEvery <= 0 {
		return func() {}
	}
	ro.Logger = log
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait := time.Duration(rand.Int64N(int64(o.reconcileEvery))) + time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = o.reconcileEvery
			r, err := reconcile.Run(ctx, ro)
			if err != nil && ctx.Err() == nil {
				log.Warn("reconcile pass failed; next pass in "+wait.String(), "err", err)
				continue
			}
			if len(r.Items) > 0 {
				log.Info("reconcile pass", "requeued", r.Count(reconcile.Requeued), "removed", r.Count(reconcile.Removed), "reported", r.Count(reconcile.Reported))
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// reviewHandler is the review page, or nil when it is off.
func (o *serveOptions) reviewHandler(cfg *config.Project, store meta.Store, log *slog.Logger, adm *server.Admission, buckets ...blob.Bucket) http.Handler {
	if !o.reviewOn {
		return nil
	}
	return review.New(review.Options{Project: cfg, Meta: store, Buckets: buckets, Logger: log, Admit: adm.Admit,
		RawOriginals: o.backend == "local" && loopback(o.addr)})
}

// loopback reports whether addr only listens on this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pushAuth builds OIDC verification of push requests when an audience is given. On
// Cloud Run (K_SERVICE is set there) a private service's requests have passed Cloud
// Run's own token check, which removes the signature: those tokens are accepted on
// their claims. A public service's are not checked by Cloud Run, so theirs must be
// signed.
func (o *serveOptions) pushAuth(ctx context.Context, cfg *config.Project) (*server.PushAuth, error) {
	if o.pushAudience == "" {
		return nil, nil
	}
	if o.pushSA == "" {
		return nil, fmt.Errorf("--push-audience needs --push-service-account: the account Pub/Sub signs push tokens as")
	}
	v, err := idtoken.NewValidator(ctx)
	if err != nil {
		return nil, fmt.Errorf("push token validator: %w", err)
	}
	return &server.PushAuth{Validator: v, Audience: o.pushAudience, ServiceAccount: o.pushSA,
		CheckedByFront: os.Getenv("K_SERVICE") != "" && !cfg.Serving.Public}, nil
}

// closingPredictor is a model model serve can close.
type closingPredictor interface {
	model.Predictor
	Close() error
}

// servedModel opens what model serve serves: the built-in face model, or an ONNX
// file — on Vertex AI read from $AIP_STORAGE_URI, the copy of the model's artifact
// directory Vertex makes (not artifactUri itself), when its path is relative.
func servedModel(ctx context.Context, r config.ModelRef, settings string) (closingPredictor, imaging.Limits, string, error) {
	switch r.Kind {
	case config.ModelBuiltin:
		m, err := builtin.New(builtin.DefaultParams)
		return noClose{m}, builtin.InputLimits, "builtin-" + r.Target, err
	case config.ModelONNX:
		var set config.ONNX
		if settings != "" {
			dec := json.NewDecoder(strings.NewReader(settings))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&set); err != nil {
				return nil, imaging.Limits{}, "", fmt.Errorf("--onnx: %w", err)
			}
		}
		target := r.Target
		if uri := os.Getenv("AIP_STORAGE_URI"); uri != "" && !strings.HasPrefix(target, "gs://") && !filepath.IsAbs(target) {
			target = strings.TrimSuffix(uri, "/") + "/" + target
		}
		m, err := models.OpenONNX(ctx, "", config.Analysis{Name: "served", ONNX: &set}, target)
		return m, onnx.InputLimits, "onnx-" + filepath.Base(target), err
	}
	return nil, imaging.Limits{}, "", fmt.Errorf("model serve serves builtin:faces and onnx:PATH models; %s is served by its own platform", r)
}

type noClose struct{ model.Predictor }

func (noClose) Close() error { return nil }

// DefaultModelServePixels is model serve's pixel budget: 100 MP, about 800 MB of
// decoded images at the measured 8 bytes a pixel, on the default n1-standard-2's 7.5 GB.
const DefaultModelServePixels = 100_000_000

// connLimits bound how long a connection may take: a client that trickles its
// headers or body, or never reads the answer, cannot hold a connection (and the
// memory behind it) for ever.
type connLimits struct {
	Read  time.Duration // the whole request, body included
	Write time.Duration // from the end of the headers to the end of the answer: the work
	Idle  time.Duration // between requests on a kept-alive connection
}

// serviceLimits are serve's: a push delivery may work until its ack deadline.
func serviceLimits(ackDeadline time.Duration) connLimits {
	return connLimits{Read: time.Minute, Write: ackDeadline + 30*time.Second, Idle: 2 * time.Minute}
}

// listenAndServe serves h until ctx ends, then drains: onDrain runs first (readiness
// off), the server finishes in-flight requests within timeout, then onStop runs.
func listenAndServe(ctx context.Context, addr string, h http.Handler, lim connLimits, timeout time.Duration, log *slog.Logger, onDrain, onStop func(), what string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: min(10*time.Second, lim.Read), ReadTimeout: lim.Read, WriteTimeout: lim.Write, IdleTimeout: lim.Idle}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "serving", what)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", timeout.String())
	if onDrain != nil {
		onDrain()
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = hs.Shutdown(sctx)
	if onStop != nil {
		onStop()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func newModelCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Serve or deploy models"}
	var ref, logFormat, addr, onnxSettings string
	var maxInstances int
	var maxPixels int64
	serve := &cobra.Command{
		Use:   "serve [--model builtin:faces]",
		Short: "Serve a built-in model behind the Vertex AI custom container contract",
		Long: `model serve listens on $AIP_HTTP_PORT (8080), predicts on $AIP_PREDICT_ROUTE
(/predict) and answers health on $AIP_HEALTH_ROUTE (/health), as Vertex AI expects of a
custom container. It also answers /v1/projects/P/locations/L/endpoints/E:predict, so a
Vertex client can be pointed at it locally.
On Vertex AI (AIP_MODE=PREDICTION) it listens on every interface; anywhere else on
127.0.0.1 unless --addr says otherwise: it has no authentication of its own.
Each request may carry --max-instances images (413 beyond); every image's header is
read first, and the request's pixels are admitted against --max-inflight-pixels before
anything decodes: 413 for a request larger than the whole budget, 429 with
Retry-After while other requests hold it.`,
		Example: "  AIP_HTTP_PORT=8081 visionstack model serve\n  curl -s localhost:8081/predict -d '{\"instances\":[{\"content\":\"'$(base64 -w0 photo.jpg)'\"}]}'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := config.ParseModel(ref)
			if err != nil {
				return err
			}
			imaging.Init(0)
			m, limits, id, err := servedModel(cmd.Context(), r, onnxSettings)
			if err != nil {
				return err
			}
			defer m.Close()
			routes := modelserver.RoutesFromEnv()
			if addr == "" {
				addr = "127.0.0.1:" + routes.Port
				if os.Getenv("AIP_MODE") == "PREDICTION" { // Vertex AI reaches it from outside the container
					addr = ":" + routes.Port
				}
			}
			log := g.serviceLogger(logFormat, "")
			adm := server.NewAdmission(maxPixels, 2*time.Second)
			h := modelserver.Handler(m, modelserver.Options{Routes: routes, ModelID: id, Logger: log,
				MaxInstances: maxInstances, Limits: limits, Admit: adm.Admit, Budget: maxPixels})
			return listenAndServe(ctx, addr, h,
				connLimits{Read: time.Minute, Write: 2 * time.Minute, Idle: 2 * time.Minute}, 9*time.Second, log, nil, nil, fmt.Sprintf("%s on %s, health %s", ref, routes.Predict, routes.Health))
		},
	}
	serve.Flags().StringVar(&ref, "model", "builtin:faces", "model to serve: builtin:faces, or onnx:PATH (on Vertex AI relative to $AIP_STORAGE_URI)")
	serve.Flags().StringVar(&onnxSettings, "onnx", "", `with onnx:PATH, the analysis' onnx settings as JSON (e.g. {"format":"yolov8","resize":"letterbox"})`)
	serve.Flags().StringVar(&addr, "addr", "", "listen address (default 127.0.0.1:$AIP_HTTP_PORT; :$AIP_HTTP_PORT on Vertex AI)")
	serve.Flags().IntVar(&maxInstances, "max-instances", modelserver.DefaultMaxInstances, "most instances (images) one request may carry")
	serve.Flags().Int64Var(&maxPixels, "max-inflight-pixels", DefaultModelServePixels, "decoded pixels in flight across requests (about 8 bytes each)")
	serve.Flags().StringVar(&logFormat, "log-format", defaultLogFormat(), "json (Cloud Logging) or text")
	cmd.AddCommand(serve, newModelDeployCmd(g), newModelCompareCmd(g), newModelRolloutCmd(g), newModelInspectCmd(g))
	return cmd
}
