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
// outputs as TensorFlow.js (the format the model ships in, pure JavaScript CPU
// backend) on the same inputs: real photos and noise, to 1e-3. The reference runs
// in Node.js from runtime/model/blazeface/reference (installed by
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
	net := newNet(t)
	var inputs []float32
	for _, s := range loadPhotos(t) {
		in := make([]float32, blazeface.Size*blazeface.Size*3)
		side := float64(max(s.w, s.h))
		blazeface.Window(s.rgb, s.w, s.h, 0, 0, side, in)
		inputs = append(inputs, in...)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range blazeface.Size * blazeface.Size * 3 {
		inputs = append(inputs, rng.Float32()*2-1)
	}
	n := len(inputs) / (blazeface.Size * blazeface.Size * 3)
	dir := t.TempDir()
	raw := make([]byte, 0, 4*len(inputs))
	for _, v := range inputs {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(dir, "in.f32"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(ref, "reference.js"), filepath.Join("model", "blazeface-back.json"), filepath.Join(dir, "in.f32"), filepath.Join(dir, "out"), itoa(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("TensorFlow.js reference: %v\n%s", err, out)
	}
	got, err := net.Run(inputs, n)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []float32 {
		b, err := os.ReadFile(filepath.Join(dir, "out."+name+".f32"))
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float32, len(b)/4)
		for i := range f {
			f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return f
	}
	scores16, boxes16, scores8, boxes8 := read("Identity"), read("Identity_2"), read("Identity_1"), read("Identity_3")
	const big, small = 512, 384
	worst := 0.0
	for k := range n {
		want := Raw(append(append([]float32{}, scores16[k*big:(k+1)*big]...), scores8[k*small:(k+1)*small]...),
			append(append([]float32{}, boxes16[k*big*16:(k+1)*big*16]...), boxes8[k*small*16:(k+1)*small*16]...))
		for i, v := range want.Scores {
			worst = math.Max(worst, math.Abs(float64(v-got[k].Scores[i])))
		}
		for i, v := range want.Boxes {
			worst = math.Max(worst, math.Abs(float64(v-got[k].Boxes[i])))
		}
	}
	t.Logf("%d inputs, %d outputs each: largest difference from TensorFlow.js %.2g", n, 896*17, worst)
	if worst > 1e-3 {
		t.Errorf("ONNX Runtime differs from TensorFlow.js by %g (> 1e-3)", worst)
	}
}

func Raw(scores, boxes []float32) blazeface.Raw { return blazeface.Raw{Scores: scores, Boxes: boxes} }

func itoa(n int) string { return strconv.Itoa(n) }
