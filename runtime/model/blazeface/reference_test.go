package blazeface_test

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
)

// ONNX Runtime, running the graph as convert.go translated it, gives the same
// outputs as TensorFlow.js (the format the models ship in, pure JavaScript CPU
// backend) on the same inputs: real photos and noise, for each model, to a bound set by
// float32 rounding (below), on any x86-64 CPU; and the faces decoded from both agree. The
// reference runs in Node.js from runtime/model/blazeface/reference (installed by
// scripts/install-deps.sh); CI requires it (VISIONSTACK_REQUIRE_REFERENCE).
func TestMatchesTensorFlowJS(t *testing.T) {
	ref, err := filepath.Abs("reference")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(ref, "node_modules", "@tensorflow", "tfjs-core")); err != nil || serr != nil {
		msg := "TensorFlow.js reference not installed (node and runtime/model/blazeface/reference/node_modules: scripts/install-deps.sh)"
		if os.Getenv("VISIONSTACK_REQUIRE_REFERENCE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	photos := loadPhotos(t)
	for _, m := range []struct {
		name    string
		model   blazeface.Model
		file    string
		outputs []string
		// want builds image k's Raw from the reference's outputs (in outputs' order).
		want func(out [][]float32, k int) blazeface.Raw
	}{
		{"back-camera", blazeface.BackCamera, "blazeface-back.json", []string{"Identity", "Identity_2", "Identity_1", "Identity_3"},
			func(out [][]float32, k int) blazeface.Raw {
				const big, small = 512, 384
				return Raw(append(append([]float32{}, out[0][k*big:(k+1)*big]...), out[2][k*small:(k+1)*small]...),
					append(append([]float32{}, out[1][k*big*16:(k+1)*big*16]...), out[3][k*small*16:(k+1)*small*16]...))
			}},
		{"full-range", blazeface.FullRange, "facemesh-detection-full.json", []string{"Identity"},
			func(out [][]float32, k int) blazeface.Raw {
				const n = 2304
				var r blazeface.Raw
				for i := range n {
					row := out[0][(k*n+i)*17 : (k*n+i+1)*17]
					r.Scores = append(r.Scores, row[0])
					r.Boxes = append(r.Boxes, row[1:]...)
				}
				return r
			}},
	} {
		t.Run(m.name, func(t *testing.T) {
			net, err := blazeface.NewNetOf(m.model)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close()
			size := net.Size()
			var inputs []float32
			for _, s := range photos {
				inputs = append(inputs, whole(s, size)...)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for range size * size * 3 {
				inputs = append(inputs, rng.Float32()*2-1)
			}
			n := len(inputs) / (size * size * 3)
			dir := t.TempDir()
			raw := make([]byte, 0, 4*len(inputs))
			for _, v := range inputs {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
			}
			if err := os.WriteFile(filepath.Join(dir, "in.f32"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{filepath.Join(ref, "reference.js"), filepath.Join("model", m.file), filepath.Join(dir, "in.f32"), filepath.Join(dir, "out"), itoa(n), itoa(size)}, m.outputs...)
			if out, err := exec.Command(node, args...).CombinedOutput(); err != nil {
				t.Fatalf("TensorFlow.js reference: %v\n%s", err, out)
			}
			got, err := net.Run(inputs, n)
			if err != nil {
				t.Fatal(err)
			}
			var outs [][]float32
			for _, name := range m.outputs {
				b, err := os.ReadFile(filepath.Join(dir, "out."+name+".f32"))
				if err != nil {
					t.Fatal(err)
				}
				f := make([]float32, len(b)/4)
				for i := range f {
					f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
				}
				outs = append(outs, f)
			}
			// Two runtimes sum each layer's products in a different order (lane width:
			// AVX2 8, AVX-512 16; FMA or not; Winograd or direct convolution), so their
			// float32 outputs differ by rounding. A rounding error is relative to the
			// size of the sums it happens in, not to the one output it lands on: a logit
			// of -1456 is a few ulps (1.2e-4 each at 1024) from the same logit elsewhere.
			// So each output is held to relTol of its tensor's largest magnitude in that
			// image: 1e-4 is ~1700 float32 epsilons, room for the ~40 layers each adding
			// their own rounding, and ~10x what AVX2 and AVX-512 machines measured
			// (2e-6..7e-6 of the scale). A conversion error (a wrong padding, a swapped
			// channel, a misread weight) moves outputs by percents of it.
			const relTol = 1e-4
			worst := 0.0 // relative to the tensor's scale
			for k := range n {
				want := m.want(outs, k)
				if len(want.Scores) != len(got[k].Scores) || len(want.Boxes) != len(got[k].Boxes) {
					t.Fatalf("image %d: %d scores and %d box numbers, TensorFlow.js %d and %d", k, len(got[k].Scores), len(got[k].Boxes), len(want.Scores), len(want.Boxes))
				}
				for _, pair := range [][2][]float32{{want.Scores, got[k].Scores}, {want.Boxes, got[k].Boxes}} {
					scale := 1.0
					for _, v := range pair[0] {
						scale = math.Max(scale, math.Abs(float64(v)))
					}
					for i, v := range pair[0] {
						worst = math.Max(worst, math.Abs(float64(v-pair[1][i]))/scale)
					}
				}
				sameFaces(t, k, got[k].Like(want.Scores, want.Boxes).Decode(0.3), got[k].Decode(0.3))
			}
			t.Logf("%d inputs, %d outputs each: largest difference from TensorFlow.js %.2g of the output's scale", n, len(got[0].Scores)*17, worst)
			if worst > relTol {
				t.Errorf("ONNX Runtime differs from TensorFlow.js by %.2g of an output's scale (> %g)", worst, relTol)
			}
		})
	}
}

// sameFaces checks what the detector makes of the outputs: the same faces, boxes
// within IoU 0.999 and scores within 1e-4 (a sigmoid's slope is at most 1/4, so a
// logit rounding error of 1e-4 of the scale stays far below it for the logits near
// the threshold). A face scoring within 1e-4 of the threshold may fall on either side.
func sameFaces(t *testing.T, k int, want, got []blazeface.Face) {
	t.Helper()
	const threshold, scoreTol = 0.3, 1e-4
	near := func(f blazeface.Face) bool { return math.Abs(f.Score-threshold) <= scoreTol }
	matched := make([]bool, len(got))
	for _, w := range want {
		found := false
		for j, g := range got {
			if !matched[j] && blazeface.IoU(w, g) >= 0.999 && math.Abs(w.Score-g.Score) <= scoreTol {
				matched[j], found = true, true
				break
			}
		}
		if !found && !near(w) {
			t.Errorf("image %d: TensorFlow.js finds a face at %.1f,%.1f-%.1f,%.1f (%.4f) that ONNX Runtime does not", k, w.X0, w.Y0, w.X1, w.Y1, w.Score)
		}
	}
	for j, g := range got {
		if !matched[j] && !near(g) {
			t.Errorf("image %d: ONNX Runtime finds a face at %.1f,%.1f-%.1f,%.1f (%.4f) that TensorFlow.js does not", k, g.X0, g.Y0, g.X1, g.Y1, g.Score)
		}
	}
}

func Raw(scores, boxes []float32) blazeface.Raw { return blazeface.Raw{Scores: scores, Boxes: boxes} }

func itoa(n int) string { return strconv.Itoa(n) }
