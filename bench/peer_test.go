package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/peer"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// BenchmarkPeerSampleMethod compares the whole local job with the method of Google's
// Cloud Run image-processing sample — `convert - -blur 0x8 -`, once per image, which
// blurs the whole picture — on the same 8 photos, two at a time on two cores, and
// reports both throughputs and their ratio.
func BenchmarkPeerSampleMethod(b *testing.B) {
	setup(b)
	set := peer.SetFor(b)
	if os.Getenv("VISIONSTACK_BENCH_NO_VERIFY") != "" { // to see what the re-check costs
		off := false
		for _, t := range project.Pipeline.Transforms {
			if t.Blur != nil {
				t.Blur.Verify = &off
			}
		}
	}
	env := openLocal(b, nil)
	ctx := context.Background()
	var theirs, ours time.Duration
	for it := range b.N {
		d, err := peer.TwoAtATime(len(set), func(i int) error { return peer.Blur(set[i]) })
		if err != nil {
			b.Fatal(err)
		}
		theirs += d
		tasks := make([]pipeline.Task, len(set))
		for i, data := range set {
			obj := fmt.Sprintf("peer/%d-%d.jpg", it, i)
			a, err := env.Incoming.Put(ctx, obj, data, blob.PutOptions{})
			if err != nil {
				b.Fatal(err)
			}
			tasks[i] = pipeline.Task{Key: pipeline.ObjectKey(env.Incoming.Name(), obj, a.Generation),
				Source: meta.Source{Bucket: env.Incoming.Name(), Object: obj, Generation: a.Generation}}
		}
		d, err = peer.TwoAtATime(len(set), func(i int) error {
			o, err := env.Pipeline.Process(ctx, tasks[i])
			if err == nil && o.Job.State != meta.StateDone {
				err = fmt.Errorf("%s: %s", o.Job.State, o.Job.Reason)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		ours += d
	}
	images := float64(b.N * len(set))
	b.ReportMetric(images/theirs.Seconds(), "peer-images/s")
	b.ReportMetric(images/ours.Seconds(), "ours-images/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
	b.ReportMetric(float64(ours.Microseconds())/1000/images, "ms/image")
}
