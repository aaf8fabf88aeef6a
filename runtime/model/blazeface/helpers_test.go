package blazeface_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/model/blazeface"
	"github.com/visionstack/visionstack/testdata/photos"
)

func newNet(t testing.TB) *blazeface.Net {
	t.Helper()
	net, err := blazeface.NewNet()
	if err != nil {
		t.Fatal(err) // not a skip: ONNX Runtime is a runtime dependency (scripts/install-deps.sh)
	}
	t.Cleanup(func() { net.Close() })
	return net
}

// vetoNet is the full-range network, as the built-in model's veto.
func vetoNet(t testing.TB) *blazeface.Net {
	t.Helper()
	net, err := blazeface.NewNetOf(blazeface.FullRange)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	return net
}

type photo struct {
	name string
	rgb  []uint8
	w, h int
	gt   [][4]float64 // pixels: x0, y0, x1, y1
}

// loadPhotos reads the hand-boxed photos at the analysis size (1024 px), oriented.
func loadPhotos(t testing.TB) []photo {
	t.Helper()
	truth, err := photos.FaceTruth()
	if err != nil {
		t.Fatal(err)
	}
	var out []photo
	for _, tr := range truth {
		p := decode(t, tr.File)
		for _, b := range tr.Boxes {
			p.gt = append(p.gt, [4]float64{b[0], b[1], b[0] + b[2], b[1] + b[3]})
		}
		out = append(out, p)
	}
	return out
}

func decode(t testing.TB, file string) photo {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := imaging.Limits{}.Decode(data, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	rgb, w, h, err := img.RGB()
	if err != nil {
		t.Fatal(err)
	}
	return photo{name: filepath.Base(file), rgb: rgb, w: w, h: h}
}

// whole is photo p's whole-image window at a network input of size×size.
func whole(p photo, size int) []float32 {
	in := make([]float32, size*size*3)
	blazeface.Window(p.rgb, p.w, p.h, 0, 0, float64(max(p.w, p.h)), in)
	return in
}
