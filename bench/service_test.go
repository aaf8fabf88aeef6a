package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/server"
	"github.com/visionstack/visionstack/testdata/photos"
)

// serveLocal runs the service on local backends with the serve command's defaults.
func serveLocal(b *testing.B) (*localmode.Env, *httptest.Server) {
	setup(b)
	adm := server.NewAdmission(150_000_000, 2*time.Second)
	env := openLocal(b, adm)
	hs := httptest.NewServer(server.New(server.Options{Pipeline: env.Pipeline, Incoming: env.Incoming, Publisher: env.Queue,
		WorkTopic: localmode.WorkTopic, Admission: adm, MaxBody: int64(project.Pipeline.Prepare.MaxBytes)}))
	b.Cleanup(hs.Close)
	return env, hs
}

// openLocal opens local backends whose pipeline admits through adm.
// openLocal opens a local environment for the demo project, with admission control
// when adm is not nil.
func openLocal(b *testing.B, adm *server.Admission) *localmode.Env {
	var o localmode.Options
	if adm != nil {
		o.Admit = adm.Admit
	}
	env, err := localmode.Open(project, b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { env.Close() })
	return env
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkSyncAnalyze1MP sends a 1 MP photo to POST /v1/images:analyze over HTTP and
// splits each request's latency: the model's share, Prepare's, and the rest (HTTP,
// JSON, storing the original and queueing the remainder).
func BenchmarkSyncAnalyze1MP(b *testing.B) {
	_, hs := serveLocal(b)
	src, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	img, err := imaging.Upscale(src, 1224, 90) // 1224×816 ≈ 1.0 MP
	if err != nil {
		b.Fatal(err)
	}
	var total, beyondModel, beyondModelPrepare, serverOnly []float64
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := http.Post(hs.URL+"/v1/images:analyze", "image/jpeg", bytes.NewReader(img))
		if err != nil {
			b.Fatal(err)
		}
		var ar server.AnalyzeResponse
		err = json.NewDecoder(resp.Body).Decode(&ar)
		resp.Body.Close()
		ms := float64(time.Since(start).Microseconds()) / 1000
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("analyze: %d %v", resp.StatusCode, err)
		}
		total = append(total, ms)
		beyondModel = append(beyondModel, ms-ar.Timings.Analyze)
		beyondModelPrepare = append(beyondModelPrepare, ms-ar.Timings.Analyze-ar.Timings.Prepare)
		serverOnly = append(serverOnly, ms-ar.Timings.Analyze-ar.Timings.Prepare-ar.Timings.HandOff)
	}
	b.StopTimer()
	b.ReportMetric(percentile(total, 0.5), "p50-ms")
	b.ReportMetric(percentile(total, 0.99), "p99-ms")
	b.ReportMetric(percentile(beyondModel, 0.99), "p99-beyond-model-ms")
	b.ReportMetric(percentile(beyondModelPrepare, 0.99), "p99-beyond-model+prepare-ms")
	b.ReportMetric(percentile(serverOnly, 0.99), "p99-http-json-ms")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/image")
	reportPeakRSS(b)
}

// BenchmarkConcurrent16x12MP runs the whole job for 16 different 12 MP images at
// once, with the serve command's pixel budget, and reports the peak RSS: the target
// is to stay under a 512 MiB Cloud Run limit.
func BenchmarkConcurrent16x12MP(b *testing.B) {
	setup(b)
	budget := server.PixelBudget(512 << 20) // a 512 MiB Cloud Run instance
	env := openLocal(b, server.NewAdmission(budget, time.Minute))
	p := env.Pipeline
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tasks := uploadBatch(b, env.Incoming, i, 16)
		b.StartTimer()
		var wg sync.WaitGroup
		for _, t := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := p.Process(ctx, t); err != nil || out.Job.State != meta.StateDone {
					b.Errorf("process: %v %s", err, out.Job.Reason)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*16), "ms/image")
	b.ReportMetric(float64(budget)/1e6, "budget-MP")
	reportPeakRSS(b)
}
