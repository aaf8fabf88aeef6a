package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/visionstack/visionstack/internal/gcpressure"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/testdata/photos"
)

// crowds are montages of sample photos with one face each.
var crowds = []struct {
	photo      string
	cols, rows int
}{{"grace_hopper.jpg", 4, 3}, {"grace_hopper.jpg", 5, 5}, {"grace_hopper.jpg", 8, 6}, {"astronaut.png", 6, 4}}

// processCrowd runs one montage through a fresh local pipeline (maxPredictions 10,
// far below the crowd) and returns its job and processed bytes.
func processCrowd(t *testing.T, photo string, cols, rows int) (meta.Job, []byte, error) {
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		return meta.Job{}, nil, err
	}
	cfg.Pipeline.Analyses[0].MaxPredictions = 10
	env := openLocal(t, cfg)
	data, err := photos.Montage(photo, cols, rows)
	if err != nil {
		return meta.Job{}, nil, err
	}
	job, err := processOne(env, fmt.Sprintf("crowd-%dx%d.jpg", cols, rows), data)
	if err != nil {
		return job, nil, err
	}
	return job, readOutput(t, env, job), nil
}

// openLocal opens a local environment for cfg, logging warnings to the test, closed
// when the test ends.
func openLocal(t *testing.T, cfg *config.Project) *localmode.Env {
	t.Helper()
	env, err := localmode.Open(cfg, t.TempDir(), localmode.Options{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	return env
}

// readOutput is the processed image of a done job.
func readOutput(t *testing.T, env *localmode.Env, job meta.Job) []byte {
	t.Helper()
	processed, _, err := blob.ReadAll(context.Background(), env.Processed, job.Outputs[0].Object, 0)
	if err != nil {
		t.Fatal(err)
	}
	return processed
}

// processOne puts data into env's incoming bucket as name and runs its job: done, or
// an error saying why not.
func processOne(env *localmode.Env, name string, data []byte) (meta.Job, error) {
	ctx := context.Background()
	a, err := env.Incoming.Put(ctx, name, data, blob.PutOptions{})
	if err != nil {
		return meta.Job{}, err
	}
	out, err := env.Pipeline.Process(ctx, pipeline.Task{Key: pipeline.ObjectKey("incoming", name, a.Generation),
		Source: meta.Source{Bucket: "incoming", Object: name, Generation: a.Generation}})
	if err != nil {
		return out.Job, err
	}
	if out.Job.State != meta.StateDone {
		return out.Job, fmt.Errorf("%s: %s (%s)", name, out.Job.State, out.Job.Reason)
	}
	return out.Job, nil
}

// Crowds of 12, 25 and 48 real faces, processed one after another and all at once
// while the collector runs constantly: every one done, every face the model found
// anonymized (maxPredictions does not cap anonymization), the same bytes every run.
func TestCrowdsUnderGCPressure(t *testing.T) {
	gcpressure.Constant(t)
	type result struct {
		job  meta.Job
		data []byte
	}
	first := make([]result, len(crowds))
	for i, c := range crowds {
		job, data, err := processCrowd(t, c.photo, c.cols, c.rows)
		if err != nil {
			t.Fatalf("%dx%d: %v", c.cols, c.rows, err)
		}
		faces := c.cols * c.rows
		dets := len(job.Results[0].Detections)
		t.Logf("%d faces: %d detections, %d bytes out", faces, dets, len(data))
		if dets < faces {
			t.Errorf("%d faces: the record keeps %d detections; anonymization must see every face found", faces, dets)
		}
		first[i] = result{job, data}
	}
	var jobs []meta.Job
	var outs [][]byte
	for _, r := range first {
		jobs, outs = append(jobs, r.job), append(outs, r.data)
	}
	judgeCrowds(t, jobs, outs)
	for round := range 2 {
		var wg sync.WaitGroup
		for i, c := range crowds {
			wg.Go(func() {
				job, data, err := processCrowd(t, c.photo, c.cols, c.rows)
				if err != nil {
					t.Errorf("round %d, %dx%d concurrently: %v", round, c.cols, c.rows, err)
					return
				}
				if len(job.Results[0].Detections) != len(first[i].job.Results[0].Detections) || !bytes.Equal(data, first[i].data) {
					t.Errorf("round %d, %dx%d: output differs from the first run (%d vs %d bytes)", round, c.cols, c.rows, len(data), len(first[i].data))
				}
			})
		}
		wg.Wait()
	}
}

// judgeCrowds asks OpenCV's cascades about every anonymized box of the crowds.
func judgeCrowds(t *testing.T, jobs []meta.Job, processed [][]byte) {
	t.Helper()
	var jj []judgedJob
	for i, c := range crowds {
		data, err := photos.Montage(c.photo, c.cols, c.rows)
		if err != nil {
			t.Fatal(err)
		}
		jj = append(jj, judgedJob{name: fmt.Sprintf("crowd of %d", c.cols*c.rows), original: data, job: jobs[i], processed: processed[i]})
	}
	judgeJobs(t, jj)
}
