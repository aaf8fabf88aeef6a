package blazeface_test

import (
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/model/blazeface"
)

// BenchmarkBlazeFaceWindow: the network alone on one 256×256 window (ONNX Runtime,
// one thread), the per-image figure at the detector's input size.
func BenchmarkBlazeFaceWindow(b *testing.B) {
	net := newNet(b)
	p := loadPhotos(b)[0]
	in := make([]float32, blazeface.Size*blazeface.Size*3)
	blazeface.Window(p.rgb, p.w, p.h, 0, 0, float64(max(p.w, p.h)), in)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := net.Run(in, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/image")
}
