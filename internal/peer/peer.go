// Package peer is what the benchmarks compare visionstack with: the method of
// Google's Cloud Run image-processing sample (ImageMagick's `convert - -blur 0x8 -`,
// once per image, blurring the whole picture), on issue 13's set of 8 photos.
package peer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/testdata/photos"
)

// ImageMagick is the real one from Debian's imagemagick package (scripts/install-deps.sh);
// a `convert` earlier on PATH may be something else.
const ImageMagick = "/usr/bin/convert"

// Available says whether ImageMagick is installed, or why not.
func Available() error {
	out, err := exec.Command(ImageMagick, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ImageMagick") {
		return fmt.Errorf("ImageMagick not installed at %s (scripts/install-deps.sh installs it): %v %s", ImageMagick, err, out)
	}
	return nil
}

var (
	once sync.Once
	set  [][]byte
	err  error
)

// Set is the comparison set: six ≈2.7 MP photos and two 12 MP ones, with 3–5 faces,
// upscaled from the sample photos (JPEG q90), the same bytes on every call.
func Set() ([][]byte, error) {
	once.Do(func() {
		for i := 1; i <= 6; i++ {
			src, e := os.ReadFile(filepath.Join(photos.Dir(), "faces", fmt.Sprintf("faceapi_sample%d.jpg", i)))
			if e != nil {
				err = e
				return
			}
			longs := []int{2000} // ≈ 2.7 MP at 3:2
			if i <= 2 {
				longs = append(longs, 4240) // ≈ 12 MP
			}
			for _, long := range longs {
				data, e := imaging.Upscale(src, long, 90)
				if e != nil {
					err = e
					return
				}
				set = append(set, data)
			}
		}
	})
	return set, err
}

// SetFor is Set for a benchmark: skipped, saying why, without ImageMagick.
func SetFor(tb testing.TB) [][]byte {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Skip(err)
	}
	s, err := Set()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Compare runs the sample's method on set, two at a time, then ours(it) — which
// processes the same set once and returns its wall time — b.N times each, and
// reports both throughputs, their ratio and ours in ms per image.
func Compare(b *testing.B, set [][]byte, ours func(it int) (time.Duration, error)) {
	var tTheirs, tOurs time.Duration
	var user, sys, minflt float64 // ours: this process's, while ours ran
	for it := range b.N {
		d, err := TwoAtATime(len(set), func(i int) error { return Blur(set[i]) })
		if err != nil {
			b.Fatal(err)
		}
		tTheirs += d
		u0, s0, f0 := Usage()
		if d, err = ours(it); err != nil {
			b.Fatal(err)
		}
		u1, s1, f1 := Usage()
		user, sys, minflt = user+u1-u0, sys+s1-s0, minflt+f1-f0
		tOurs += d
	}
	images := float64(b.N * len(set))
	// The sample method runs in child processes, so this process's usage while ours
	// ran is ours alone: where its CPU goes, the kernel's share included.
	b.ReportMetric(user/images, "user-ms/image")
	b.ReportMetric(sys/images, "sys-ms/image")
	b.ReportMetric(minflt/images, "minflt/image")
	if user+sys > 0 {
		b.ReportMetric(100*sys/(user+sys), "sys-%")
	}
	b.ReportMetric(images/tTheirs.Seconds(), "peer-images/s")
	b.ReportMetric(images/tOurs.Seconds(), "ours-images/s")
	b.ReportMetric(tTheirs.Seconds()/tOurs.Seconds(), "ratio")
	b.ReportMetric(float64(tOurs.Microseconds())/1000/images, "ms/image")
}

// Blur runs the sample's method on one image.
func Blur(data []byte) error {
	cmd := exec.Command(ImageMagick, "-", "-blur", "0x8", "-")
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || out.Len() == 0 {
		return fmt.Errorf("convert: %v (%d bytes out)", err, out.Len())
	}
	return nil
}

// TwoAtATime runs f on 0..n-1, two at a time, and returns the wall time.
func TwoAtATime(n int, f func(i int) error) (time.Duration, error) {
	start := time.Now()
	work := make(chan int)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range work {
				if err := f(i); err != nil {
					errs <- err
					for range work { // drain, so the sender is not stuck
					}
					return
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return time.Since(start), nil
}

// Usage is this process's user and system CPU (ms) and minor page faults so far.
func Usage() (user, sys, minflt float64) {
	var r syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	ms := func(tv syscall.Timeval) float64 { return float64(tv.Sec)*1000 + float64(tv.Usec)/1000 }
	return ms(r.Utime), ms(r.Stime), float64(r.Minflt)
}
