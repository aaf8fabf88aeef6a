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
// backend) on the same inputs: real photos and noise, to 1e-3, for each model. The
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
			worst := 0.0
			for k := range n {
				want := m.want(outs, k)
				if len(want.Scores) != len(got[k].Scores) || len(want.Boxes) != len(got[k].Boxes) {
					t.Fatalf("image %d: %d scores and %d box numbers, TensorFlow.js %d and %d", k, len(got[k].Scores), len(got[k].Boxes), len(want.Scores), len(want.Boxes))
				}
				for i, v := range want.Scores {
					worst = math.Max(worst, math.Abs(float64(v-got[k].Scores[i])))
				}
				for i, v := range want.Boxes {
					worst = math.Max(worst, math.Abs(float64(v-got[k].Boxes[i])))
				}
			}
			t.Logf("%d inputs, %d outputs each: largest difference from TensorFlow.js %.2g", n, len(got[0].Scores)*17, worst)
			if worst > 1e-3 {
				t.Errorf("ONNX Runtime differs from TensorFlow.js by %g (> 1e-3)", worst)
			}
		})
	}
}

func Raw(scores, boxes []float32) blazeface.Raw { return blazeface.Raw{Scores: scores, Boxes: boxes} }

func itoa(n int) string { return strconv.Itoa(n) }
