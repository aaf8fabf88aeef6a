package imaging_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

// TestConcurrentDecodes decodes the sample photos from several goroutines at once:
// the pipeline runs images in parallel, and every decode must succeed every time.
func TestConcurrentDecodes(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(photos.Dir(), "faces", "*.jpg"))
	var datas [][]byte
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		datas = append(datas, d)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				d := datas[(g+i)%len(datas)]
				var err error
				if i%2 == 0 {
					var im *imaging.Image
					im, err = imaging.Editable(d, 2048, true)
					if err == nil {
						_, err = im.JPEG(85, true)
						im.Close()
					}
				} else {
					_, _, _, err = imaging.EncodeFit(d, 1024, imaging.CropNone, true, 1_000_000, 90)
				}
				if err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
					t.Errorf("goroutine %d image %d: %v", g, i, err)
				}
			}
		}()
	}
	wg.Wait()
	if fails > 0 {
		t.Fatalf("%d of 48 concurrent decodes failed", fails)
	}
}
