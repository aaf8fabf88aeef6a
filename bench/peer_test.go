package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/testdata/photos"
)

// ImageMagick is the real one from Debian's imagemagick package (scripts/install-deps.sh);
// a `convert` earlier on PATH may be something else.
const ImageMagick = "/usr/bin/convert"

var (
	peerOnce   sync.Once
	peerPhotos [][]byte
	peerErr    error
)

// peerSet is issue 13's comparison set: six ~2.7 MP photos with 3–5 faces and two
// 12 MP upscales, made from the sample photos.
func peerSet(b *testing.B) [][]byte {
	peerOnce.Do(func() {
		for i := 1; i <= 6; i++ {
			src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", fmt.Sprintf("faceapi_sample%d.jpg", i)))
			if err != nil {
				peerErr = err
				return
			}
			long := 2000 // ≈ 2.7 MP at 3:2
			if i <= 2 {
				long = 4240 // ≈ 12 MP
			}
			data, err := imaging.Upscale(src, long, 90)
			if err != nil {
				peerErr = err
				return
			}
			peerPhotos = append(peerPhotos, data)
			if i <= 2 { // the two 12 MP ones also count as two of the 2.7 MP ones' scenes
				small, err := imaging.Upscale(src, 2000, 90)
				if err != nil {
					peerErr = err
					return
				}
				peerPhotos = append(peerPhotos, small)
			}
		}
	})
	if peerErr != nil {
		b.Fatal(peerErr)
	}
	return peerPhotos
}

// twoAtATime runs f on every photo, two at a time, and returns the wall time.
func twoAtATime(n int, f func(i int) error) (time.Duration, error) {
	start := time.Now()
	work := make(chan int)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range work {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return time.Since(start), nil
}

// BenchmarkPeerSampleMethod compares the whole local job with the method of Google's
// Cloud Run image-processing sample — `convert - -blur 0x8 -`, once per image, which
// blurs the whole picture — on the same 8 photos, two at a time on two cores, and
// reports both throughputs and their ratio.
func BenchmarkPeerSampleMethod(b *testing.B) {
	setup(b)
	out, err := exec.Command(ImageMagick, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ImageMagick") {
		b.Skipf("ImageMagick not installed at %s (scripts/install-deps.sh installs it): %v %s", ImageMagick, err, out)
	}
	set := peerSet(b)
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
	var peer, ours time.Duration
	for it := range b.N {
		d, err := twoAtATime(len(set), func(i int) error {
			cmd := exec.Command(ImageMagick, "-", "-blur", "0x8", "-")
			cmd.Stdin = bytes.NewReader(set[i])
			var o bytes.Buffer
			cmd.Stdout = &o
			if err := cmd.Run(); err != nil || o.Len() == 0 {
				return fmt.Errorf("convert: %v (%d bytes out)", err, o.Len())
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		peer += d
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
		d, err = twoAtATime(len(set), func(i int) error {
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
	b.ReportMetric(images/peer.Seconds(), "peer-images/s")
	b.ReportMetric(images/ours.Seconds(), "ours-images/s")
	b.ReportMetric(peer.Seconds()/ours.Seconds(), "ratio")
	b.ReportMetric(float64(ours.Microseconds())/1000/images, "ms/image")
}
