// Package bench measures each step and the whole local pipeline on a 12-megapixel
// JPEG made from a sample photo, on one core (GOMAXPROCS=1, one libvips thread).
// Run through `make bench`, which runs every benchmark in its own process so that the
// peak RSS reported is that benchmark's, and writes bench/RESULTS.md.
package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/peer"
	"github.com/visionstack/visionstack/runtime/analyze"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/model/onnx"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/prepare"
	"github.com/visionstack/visionstack/runtime/transform"
	"github.com/visionstack/visionstack/testdata/photos"
)

func TestMain(m *testing.M) {
	imaging.Init(1) // one libvips thread: the targets are per core
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

var (
	once     sync.Once
	big      []byte // 12 MP JPEG
	project  *config.Project
	setupErr error
)

// setup builds the 12 MP input from a real photo (upscaled, so faces stay real) and
// loads the demo project.
func setup(b *testing.B) {
	once.Do(func() {
		src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
		if err != nil {
			setupErr = err
			return
		}
		big, setupErr = imaging.Upscale(src, 4240, 90) // 4240×2827 ≈ 12.0 MP
		if setupErr != nil {
			return
		}
		project, setupErr = config.LoadFile(photos.DemoProject())
	})
	if setupErr != nil {
		b.Fatal(setupErr)
	}
}

// reportPeakRSS adds the process's peak resident set (VmHWM) to the result.
func reportPeakRSS(b *testing.B) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			b.ReportMetric(float64(kb)/1024, "peak-RSS-MB")
		}
	}
}

// usage is CPU time (ms) and minor page faults of the process so far.
type usage struct{ user, sys, minflt float64 }

func usageNow() usage {
	u, s, f := peer.Usage()
	return usage{u, s, f}
}

func (u usage) minus(v usage) usage {
	return usage{u.user - v.user, u.sys - v.sys, u.minflt - v.minflt}
}
func (u usage) plus(v usage) usage { return usage{u.user + v.user, u.sys + v.sys, u.minflt + v.minflt} }

// usageAtStart is the process's CPU time and page faults when the timed part began.
var usageAtStart usage

// begin marks the start of a benchmark's timed part: its wall clock and the
// process's resource usage (report gives both per image).
func begin() time.Time {
	usageAtStart = usageNow()
	return time.Now()
}

// reportUsage gives, per image, user and system CPU (the kernel's share shows page
// faults and unmapping, which wall time on one core hides) and minor page faults.
func reportUsage(b *testing.B, u usage, images int) {
	n := float64(images)
	b.ReportMetric(u.user/n, "user-ms/image")
	b.ReportMetric(u.sys/n, "sys-ms/image")
	b.ReportMetric(u.minflt/n, "minflt/image")
	if u.user+u.sys > 0 {
		b.ReportMetric(100*u.sys/(u.user+u.sys), "sys-%")
	}
}

// report gives, per image: wall time, CPU and faults (reportUsage), peak RSS.
func report(b *testing.B, start time.Time) {
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/image")
	reportUsage(b, usageNow().minus(usageAtStart), b.N)
	reportPeakRSS(b)
}

// keep is the long side the demo's transform needs, which Prepare decodes at.
func keep() int { return transform.New(project.Pipeline.Transforms, true).LongSide() }

func BenchmarkPrepare12MP(b *testing.B) {
	setup(b)
	p := prepare.New(project.Pipeline.Prepare)
	b.ReportAllocs()
	b.ResetTimer()
	start := begin()
	for range b.N {
		img, err := p.Prepare(big, keep())
		if err != nil {
			b.Fatal(err)
		}
		img.Close()
	}
	report(b, start)
}

func prepared(b *testing.B) *prepare.Image {
	img, err := prepare.New(project.Pipeline.Prepare).Prepare(big, keep())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(img.Close)
	return img
}

func analyzer(b *testing.B) *analyze.Analyzer {
	models, err := localmode.Models(project)
	if err != nil {
		b.Fatal(err)
	}
	a, err := analyze.New(project.Pipeline, models)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func BenchmarkAnalyzeFaces(b *testing.B) {
	setup(b)
	img := prepared(b)
	a := analyzer(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := begin()
	for range b.N {
		if _, err := a.Run(context.Background(), img.Base64, img.MimeType, analyze.ModeAll); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start)
}

func results(b *testing.B) []meta.Result {
	img := prepared(b)
	r, err := analyzer(b).Run(context.Background(), img.Base64, img.MimeType, analyze.ModeAll)
	if err != nil {
		b.Fatal(err)
	}
	if len(r[0].Detections) == 0 {
		b.Fatal("no face found in the benchmark image")
	}
	return r
}

func BenchmarkTransform12MP(b *testing.B) {
	setup(b)
	res := results(b)
	img := prepared(b)
	tr := transform.New(project.Pipeline.Transforms, true)
	b.ReportAllocs()
	b.ResetTimer()
	start := begin()
	for range b.N {
		if _, err := tr.Apply(img.Decoded, res); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start)
}

func processedBytes(b *testing.B) []byte {
	out, err := transform.New(project.Pipeline.Transforms, true).Apply(prepared(b).Decoded, results(b))
	if err != nil {
		b.Fatal(err)
	}
	return out.Data
}

func BenchmarkStore(b *testing.B) {
	setup(b)
	data := processedBytes(b)
	bucket, err := local.Open(b.TempDir(), "processed")
	if err != nil {
		b.Fatal(err)
	}
	defer bucket.Close()
	b.ReportAllocs()
	b.ResetTimer()
	start := begin()
	for i := range b.N {
		if _, err := bucket.Put(context.Background(), fmt.Sprintf("img-%d.jpg", i), data, blob.PutOptions{IfGenerationMatch: blob.DoesNotExist()}); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start)
}

func BenchmarkRecord(b *testing.B) {
	setup(b)
	res := results(b)
	store, err := sqlite.Open(filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := begin()
	for i := range b.N {
		key := fmt.Sprintf("k%d", i)
		c, err := store.Claim(ctx, key, meta.Source{Bucket: "incoming", Object: key}, "bench", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Complete(ctx, c, meta.Job{State: meta.StateDone, Results: res, Width: 4240, Height: 2827}); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start)
}

// BenchmarkPipeline12MP is the whole local job per image: claim, load, prepare,
// faces, blur, the anonymization re-check, 2048 px out, store, publish, record.
func BenchmarkPipeline12MP(b *testing.B) {
	setup(b)
	pipelineJobs(b, openLocal(b, nil))
}

// BenchmarkPipeline12MPNoRecheck is the same job with blur.verify off: what the
// re-check costs.
func BenchmarkPipeline12MPNoRecheck(b *testing.B) {
	setup(b)
	env, err := localmode.Open(project.WithoutRecheck(), b.TempDir(), localmode.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	pipelineJobs(b, env)
}

func pipelineJobs(b *testing.B, env *localmode.Env) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	px := builtin.NetPixels()
	var used usage // the jobs' own, the uploads left out
	for i := range b.N {
		b.StopTimer()
		task := upload(b, env.Incoming, fmt.Sprintf("in/%d.jpg", i))
		b.StartTimer()
		before := usageNow()
		out, err := env.Pipeline.Process(ctx, task)
		used = used.plus(usageNow().minus(before))
		if err != nil || out.Job.State != meta.StateDone {
			b.Fatalf("process: %v (%s %s)", err, out.Job.State, out.Job.Reason)
		}
	}
	b.StopTimer()
	// The upload into the incoming bucket ran with the timer off: it is not the job's.
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/image")
	reportUsage(b, used, b.N)
	reportNetPixels(b, px, b.N)
	reportPeakRSS(b)
}

// reportNetPixels adds the face network's input megapixels per image since
// builtin.NetPixels was before: what the detector's cost is proportional to.
func reportNetPixels(b *testing.B, before int64, images int) {
	b.ReportMetric(float64(builtin.NetPixels()-before)/1e6/float64(images), "net-MP/image")
}

// rssKB reads a field (VmRSS, VmHWM) of /proc/self/status in KiB.
func rssKB(field string) float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb)
		}
	}
	return 0
}

// inflight is how many 12 MP jobs BenchmarkInflight12MP runs at once.
const inflight = 4

// BenchmarkInflight12MP runs whole jobs on 4 different 12 MP images at once, without
// admission control, and reports the memory each in-flight image adds: the peak RSS
// during the batch (the peak is reset first, through /proc/self/clear_refs) minus the
// RSS before it, over 4; the worst batch counts.
func BenchmarkInflight12MP(b *testing.B) {
	setup(b)
	env := openLocal(b, nil)
	ctx := context.Background()
	worst := 0.0
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tasks := uploadBatch(b, env.Incoming, i, inflight)
		runtime.GC()
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatalf("reset the peak RSS: %v", err)
		}
		before := rssKB("VmRSS")
		b.StartTimer()
		var wg sync.WaitGroup
		for _, t := range tasks {
			wg.Go(func() {
				if out, err := env.Pipeline.Process(ctx, t); err != nil || out.Job.State != meta.StateDone {
					b.Errorf("process: %v %s", err, out.Job.Reason)
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		worst = max(worst, (rssKB("VmHWM")-before)/1024/inflight)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*inflight), "ms/image")
	b.ReportMetric(worst, "MiB/inflight-image")
	reportPeakRSS(b)
}

// upload stores the 12 MP image as obj in the incoming bucket and returns its task.
func upload(b *testing.B, in blob.Bucket, obj string) pipeline.Task {
	a, err := in.Put(context.Background(), obj, big, blob.PutOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return pipeline.Task{Key: pipeline.ObjectKey(in.Name(), obj, a.Generation),
		Source: meta.Source{Bucket: in.Name(), Object: obj, Generation: a.Generation}}
}

// uploadBatch uploads n copies of the 12 MP image for batch i.
func uploadBatch(b *testing.B, in blob.Bucket, i, n int) []pipeline.Task {
	var tasks []pipeline.Task
	for k := range n {
		tasks = append(tasks, upload(b, in, fmt.Sprintf("batch%d/%d.jpg", i, k)))
	}
	return tasks
}

// ownModel is the defects example's ONNX file and its evaluation images' payloads.
func ownModel(b *testing.B) ([]byte, []model.Instance) {
	file, err := os.ReadFile("../projects/defects/model/defects.onnx")
	if err != nil {
		b.Fatal(err)
	}
	names, _ := filepath.Glob("../projects/defects/eval/*.png")
	var in []model.Instance
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		in = append(in, model.Instance{Content: base64.StdEncoding.EncodeToString(data), MimeType: "image/png"})
	}
	return file, in
}

// BenchmarkOwnModel: a team's own ONNX model in-process (the defects example, 128×128
// input), per image of its evaluation set: decode the PNG payload, letterbox, run,
// decode the YOLOv8 output, NMS; one core.
func BenchmarkOwnModel(b *testing.B) {
	file, in := ownModel(b)
	m, err := onnx.New(file, onnx.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p := model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 100}
	b.ResetTimer()
	start := begin()
	for i := range b.N {
		if _, err := m.Predict(context.Background(), in[i%len(in):i%len(in)+1], p); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start)
}

// BenchmarkOwnModelFirstPrediction: from the file's bytes to the first prediction —
// load into ONNX Runtime (its environment already started), inspect, first run — what
// a new instance adds before it answers. ms/image is ms per start.
func BenchmarkOwnModelFirstPrediction(b *testing.B) {
	file, in := ownModel(b)
	p := model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 100}
	b.ResetTimer()
	start := begin()
	for range b.N {
		m, err := onnx.New(file, onnx.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Predict(context.Background(), in[:1], p); err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
	report(b, start)
}
