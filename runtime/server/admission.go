package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// Admission bounds the decoded pixels in flight, so that a burst of large images
// is answered 429/503 with Retry-After instead of exhausting memory. An image larger
// than the whole budget is admitted alone.
type Admission struct {
	mu     sync.Mutex
	cond   *sync.Cond
	budget int64
	used   int64
	wait   time.Duration // how long a request may queue for room
	// deliveryWait is how long a queue delivery may wait: longer, because a delivery
	// turned away spends one of the subscription's attempts on an image that is fine.
	deliveryWait time.Duration
}

// DefaultDeliveryWait is how long a delivery waits for room unless SetDeliveryWait
// says otherwise (serve sets half the ack deadline).
const DefaultDeliveryWait = 2 * time.Minute

// bytesPerPixel is what an admitted pixel stands for (imaging.BytesPerPixel).
const bytesPerPixel = imaging.BytesPerPixel

// baseMemory is what the process holds idle (Go runtime, libvips, model, clients:
// 128 MiB) and the built-in face detector's working memory beside the images: its
// dense run over a square 1024 px image, the largest it makes, peaks 74 MB above a
// batch of windows (its input 13 MB, ONNX Runtime's activations 61 MB; 40 MB for a
// 1024×704 photo), and it runs on every core at once (2 on the instances measured).
const baseMemory = (128 + 2*74) << 20

// PixelBudget is the pixel budget that keeps an instance with memory bytes under its
// limit: what is left after the base, at the measured bytes per pixel.
func PixelBudget(memory int64) int64 {
	return max((memory-baseMemory)/bytesPerPixel, 12_000_000)
}

// NewAdmission allows budget pixels at once; requests wait up to wait for room.
func NewAdmission(budget int64, wait time.Duration) *Admission {
	a := &Admission{budget: budget, wait: wait, deliveryWait: DefaultDeliveryWait}
	a.cond = sync.NewCond(&a.mu)
	return a
}

// Full reports whether the whole budget is in use, so a new request could only wait.
func (a *Admission) Full() bool {
	if a == nil || a.budget <= 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used >= a.budget
}

// InFlight is the pixels currently admitted.
func (a *Admission) InFlight() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used
}

// SetDeliveryWait sets how long a queue delivery (pipeline.IsDelivery) waits for room.
func (a *Admission) SetDeliveryWait(d time.Duration) {
	if a != nil && d > 0 {
		a.deliveryWait = d
	}
}

// Admit reserves pixels or fails with pipeline.ErrOverloaded after the wait: the
// request's (a client can come back) or, for a queue delivery, the longer delivery
// wait.
func (a *Admission) Admit(ctx context.Context, pixels int64) (func(), error) {
	if a == nil || a.budget <= 0 {
		return func() {}, nil
	}
	need := min(pixels, a.budget)
	wait := a.wait
	if pipeline.IsDelivery(ctx) {
		wait = a.deliveryWait
	}
	deadline := time.Now().Add(wait)
	timer := time.AfterFunc(wait, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.used+need > a.budget {
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: %d pixels requested, %d of %d in use", pipeline.ErrOverloaded, pixels, a.used, a.budget)
		}
		a.cond.Wait()
	}
	a.used += need
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.used -= need
			a.cond.Broadcast()
			a.mu.Unlock()
		})
	}, nil
}
