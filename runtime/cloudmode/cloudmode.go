// Package cloudmode wires a project's pipeline onto Google Cloud: Cloud Storage
// buckets, Pub/Sub topics, Firestore, named as the stack names them
// (config.Project.Names). The Google clients honour STORAGE_EMULATOR_HOST,
// PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST, which is how the tests and
// scripts/emulators.sh run it without a cloud account.
package cloudmode

import (
	"context"
	"fmt"
	"log/slog"

	fs "cloud.google.com/go/firestore"
	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/storage"

	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/blob/gcs"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta/firestore"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue/pubsub"
	"github.com/visionstack/visionstack/runtime/telemetry"
)

// Env is a project's pipeline on Google Cloud.
type Env struct {
	Names      config.Names
	Incoming   *gcs.Bucket
	Processed  *gcs.Bucket
	Quarantine *gcs.Bucket
	Meta       *firestore.Store
	Queue      *pubsub.Queue
	Pipeline   *pipeline.Pipeline
	// WorkTopic is where the sync API queues the rest (the storage notifications'
	// topic, read by the push subscription).
	WorkTopic string
	closers   closers.Stack
}

// Options for Open.
type Options struct {
	Models   map[string]model.Predictor
	Logger   *slog.Logger
	Admit    func(ctx context.Context, pixels int64) (func(), error)
	Database string // Firestore database id; default the stack's (Names().Database)
	// Telemetry records metrics and spans (nil: none).
	Telemetry *telemetry.Telemetry
}

// Open connects to the project's resources.
func Open(ctx context.Context, cfg *config.Project, o Options) (_ *Env, err error) {
	n := cfg.Names()
	e := &Env{Names: n, WorkTopic: n.UploadedTopic}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	sc, err := storage.NewClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage client: %w", err)
	}
	e.closers.Add(sc.Close)
	e.Incoming, e.Processed, e.Quarantine = gcs.New(sc, n.IncomingBucket), gcs.New(sc, n.ProcessedBucket), gcs.New(sc, n.QuarantineBucket)

	pc, err := ps.NewClient(ctx, cfg.GCP.Project)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	e.closers.Add(pc.Close)
	e.Queue = pubsub.New(pc, cfg.GCP.Project, o.Logger)
	e.closers.Add(e.Queue.Close)

	db := o.Database
	if db == "" {
		db = n.Database
	}
	fc, err := fs.NewClientWithDatabase(ctx, cfg.GCP.Project, db)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	e.Meta = firestore.New(fc)
	e.closers.Add(e.Meta.Close)

	e.Pipeline, err = pipeline.New(cfg, pipeline.Deps{Incoming: e.Incoming, Processed: e.Processed, Quarantine: e.Quarantine,
		Meta: e.Meta, Publisher: e.Queue, ProcessedTopic: n.ProcessedTopic, Models: o.Models, Logger: o.Logger, Admit: o.Admit, Telemetry: o.Telemetry})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Close closes every client, in reverse order of opening.
func (e *Env) Close() error {
	return e.closers.Close()
}
