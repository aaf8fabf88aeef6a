// Package gcpressure makes the Go collector run all the time during a test, so that
// memory a C library still reads after Go stopped referencing it is freed and reused
// at once: a lifetime bug shows up every run instead of now and then.
package gcpressure

import (
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// Constant sets GOGC=1 and collects (and churns 1 MiB) every millisecond until the
// test ends.
func Constant(t testing.TB) {
	t.Helper()
	old := debug.SetGCPercent(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				_ = make([]byte, 1<<20)
				time.Sleep(time.Millisecond)
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		debug.SetGCPercent(old)
	})
}
