package imaging_test

import (
	"errors"
	"fmt"
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

// RetryCorrupt tries a decode up to three times, and only for ErrCorrupt.
func TestRetryCorrupt(t *testing.T) {
	corrupt := fmt.Errorf("transform: %w: libvips failed without a message", imaging.ErrCorrupt)
	for _, c := range []struct {
		name      string
		failures  int
		err       error
		wantCalls int
		wantErr   bool
	}{
		{"spurious twice, then fine", 2, corrupt, 3, false},
		{"really corrupt", 99, corrupt, 3, true},
		{"other errors are not retried", 99, errors.New("too large"), 1, true},
	} {
		calls := 0
		_, err := imaging.RetryCorrupt(func() (int, error) {
			calls++
			if calls <= c.failures {
				return 0, c.err
			}
			return 1, nil
		})
		if calls != c.wantCalls || (err != nil) != c.wantErr {
			t.Errorf("%s: %d calls, err %v", c.name, calls, err)
		}
	}
}
