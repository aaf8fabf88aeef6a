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
	in := whole(loadPhotos(b)[0], blazeface.Size)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := net.Run(in, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/image")
}
