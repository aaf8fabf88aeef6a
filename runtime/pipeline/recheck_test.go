package pipeline_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/visionstack/visionstack/internal/peer"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/testdata/photos"
)

// On ordinary photos whose every face the analysis found (the 8 of the speed
// comparison: the sample photos upscaled to 2000 and 4240 px), the re-check adds
// nothing: it must not read the pixelated blocks as a face still there and fill a
// good box solid, nor spend rounds on it. It did on 5 of the 8 before its doubtful
// readings needed a second look.
func TestRecheckLeavesGoodBoxes(t *testing.T) {
	set, cfg := peerSetAndDemo(t)
	env := openLocal(t, cfg)
	for i, data := range set {
		name := fmt.Sprintf("peer-%d.jpg", i)
		job, err := processOne(env, name, data)
		if err != nil {
			t.Fatal(err)
		}
		if faces := len(job.Results[0].Detections); faces < 3 {
			t.Errorf("%s: %d faces found, the photo has at least 3", name, faces)
		}
		if job.Rechecked != 0 {
			t.Errorf("%s: the re-check anonymized %d more regions of a photo whose faces were all found", name, job.Rechecked)
		}
	}
}

// When the analysis is the built-in detector, the re-check reuses what it saw below
// its threshold on the pixels anonymization left alone, and looks again only around
// the anonymized regions: it ran the whole tiled scan again (0.55 MP of network input
// on a 12 MP photo, against the analysis' 1.0 MP: the job 1.36× as slow with it).
// Measured here in the network's own input pixels, the cost that does not depend on
// the CPU: at most a sixth of the analysis' (here 0.08–0.15: a look at each region,
// and a second look at a reading the first one was not sure of).
func TestRecheckReusesTheAnalysis(t *testing.T) {
	set, cfg := peerSetAndDemo(t)
	netPixels := func(cfg *config.Project, name string, data []byte) (int64, meta.Job) {
		env, err := localmode.Open(cfg, t.TempDir(), localmode.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer env.Close()
		before := builtin.NetPixels()
		job, err := processOne(env, name, data)
		if err != nil {
			t.Fatal(err)
		}
		return builtin.NetPixels() - before, job
	}
	for i, data := range set[:3] {
		name := fmt.Sprintf("peer-%d.jpg", i)
		analysis, _ := netPixels(cfg.WithoutRecheck(), name, data)
		both, job := netPixels(cfg, name, data)
		recheck := both - analysis
		t.Logf("%s: analysis %d network pixels, re-check %d (%d faces)", name, analysis, recheck, len(job.Results[0].Detections))
		if recheck*6 > analysis {
			t.Errorf("%s: the re-check ran %d network pixels, more than a sixth of the analysis' %d", name, recheck, analysis)
		}
	}
}

// peerSetAndDemo is the 8 photos of the speed comparison and the demo project.
func peerSetAndDemo(t *testing.T) ([][]byte, *config.Project) {
	t.Helper()
	set, err := peer.Set()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	return set, cfg
}
