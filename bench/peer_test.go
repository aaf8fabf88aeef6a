package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/peer"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// BenchmarkPeerSampleMethod compares the whole local job with the method of Google's
// Cloud Run image-processing sample — `convert - -blur 0x8 -`, once per image, which
// blurs the whole picture — on the same 8 photos, two at a time on two cores, and
// reports both throughputs and their ratio.
func BenchmarkPeerSampleMethod(b *testing.B) {
	setup(b)
	set := peer.SetFor(b)
	cfg := project
	if os.Getenv("VISIONSTACK_BENCH_NO_VERIFY") != "" { // to see what the re-check costs
		cfg = project.WithoutRecheck()
	}
	env, err := localmode.Open(cfg, b.TempDir(), localmode.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	ctx := context.Background()
	px := builtin.NetPixels()
	defer func() { reportNetPixels(b, px, b.N*len(set)) }()
	peer.Compare(b, set, func(it int) (time.Duration, error) {
		tasks := make([]pipeline.Task, len(set))
		for i, data := range set {
			obj := fmt.Sprintf("peer/%d-%d.jpg", it, i)
			a, err := env.Incoming.Put(ctx, obj, data, blob.PutOptions{})
			if err != nil {
				return 0, err
			}
			tasks[i] = pipeline.Task{Key: pipeline.ObjectKey(env.Incoming.Name(), obj, a.Generation),
				Source: meta.Source{Bucket: env.Incoming.Name(), Object: obj, Generation: a.Generation}}
		}
		return peer.TwoAtATime(len(set), func(i int) error {
			o, err := env.Pipeline.Process(ctx, tasks[i])
			if err == nil && o.Job.State != meta.StateDone {
				err = fmt.Errorf("%s: %s", o.Job.State, o.Job.Reason)
			}
			return err
		})
	})
}
