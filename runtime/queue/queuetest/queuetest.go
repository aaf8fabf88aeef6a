// Package queuetest is the conformance suite every queue.Queue backend passes.
package queuetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/queue"
)

// Harness is one fresh topic with its subscription and dead-letter subscription.
type Harness struct {
	Q           queue.Queue
	Topic       string
	Sub         string
	DeadSub     string // subscription on the dead-letter topic
	MaxAttempts int
	// DeadLetterOnRedelivery: the broker moves a message to the dead-letter topic only
	// when it would deliver it again (the Pub/Sub emulator), so the suite keeps a
	// nacking subscriber while it waits for the dead letter.
	DeadLetterOnRedelivery bool
}

// Run runs the suite; open returns a fresh harness for each subtest. Backoffs
// should be short (tens of milliseconds) so the suite runs fast.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	t.Run("PublishReceiveAck", func(t *testing.T) {
		h := open(t)
		ctx := context.Background()
		id, err := h.Q.Publish(ctx, h.Topic, []byte("hello"), map[string]string{"k": "v"})
		if err != nil || id == "" {
			t.Fatalf("Publish = %q, %v", id, err)
		}
		got := receiveN(t, h.Q, h.Sub, 1, func(m *queue.Message) error { return nil })
		if string(got[0].Data) != "hello" || got[0].Attributes["k"] != "v" || got[0].DeliveryAttempt != 1 {
			t.Fatalf("received %+v", got[0])
		}
		expectNone(t, h.Q, h.Sub, 300*time.Millisecond)
	})

	t.Run("NackRedelivers", func(t *testing.T) {
		h := open(t)
		ctx := context.Background()
		if _, err := h.Q.Publish(ctx, h.Topic, []byte("retry me"), nil); err != nil {
			t.Fatal(err)
		}
		n := 0
		got := receiveN(t, h.Q, h.Sub, 2, func(m *queue.Message) error {
			n++
			if n == 1 {
				return errors.New("transient")
			}
			return nil
		})
		if got[0].DeliveryAttempt != 1 || got[1].DeliveryAttempt != 2 || string(got[1].Data) != "retry me" {
			t.Fatalf("deliveries %+v", got)
		}
	})

	RunPermanent(t, open)

	t.Run("SweepSeesEachOnceAndRemovesWhatItIsTold", func(t *testing.T) {
		h := open(t)
		sw, ok := h.Q.(queue.Sweeper)
		if !ok {
			t.Fatalf("%T is not a queue.Sweeper", h.Q)
		}
		ctx := context.Background()
		for _, d := range []string{"a", "b", "c"} {
			if _, err := h.Q.Publish(ctx, h.Topic, []byte(d), map[string]string{"k": d}); err != nil {
				t.Fatal(err)
			}
		}
		sweep := func(remove string) map[string]int {
			seen := map[string]int{}
			var mu sync.Mutex
			if _, err := sw.Sweep(ctx, h.Sub, func(_ context.Context, m *queue.Message) bool {
				mu.Lock()
				defer mu.Unlock()
				seen[string(m.Data)]++
				return string(m.Data) == remove && m.Attributes["k"] == remove
			}); err != nil {
				t.Fatal(err)
			}
			return seen
		}
		if seen := sweep("b"); len(seen) != 3 || seen["a"] != 1 || seen["b"] != 1 || seen["c"] != 1 {
			t.Fatalf("first sweep saw %v, want a, b and c once each", seen)
		}
		if seen := sweep(""); len(seen) != 2 || seen["a"] != 1 || seen["c"] != 1 {
			t.Fatalf("second sweep saw %v, want a and c (b was removed), once each", seen)
		}
	})

	t.Run("DeadLetterAfterMaxAttempts", func(t *testing.T) {
		h := open(t)
		ctx := context.Background()
		if _, err := h.Q.Publish(ctx, h.Topic, []byte("poison"), map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		got := receiveN(t, h.Q, h.Sub, h.MaxAttempts, func(m *queue.Message) error { return errors.New("always fails") })
		if last := got[len(got)-1]; last.DeliveryAttempt != h.MaxAttempts {
			t.Fatalf("last attempt = %d, want %d", last.DeliveryAttempt, h.MaxAttempts)
		}
		keepCtx, stopKeep := context.WithCancel(context.Background())
		kept := make(chan struct{})
		go func() {
			defer close(kept)
			if h.DeadLetterOnRedelivery {
				_ = h.Q.Receive(keepCtx, h.Sub, func(context.Context, *queue.Message) error { return errors.New("still failing") })
			}
		}()
		dead := receiveN(t, h.Q, h.DeadSub, 1, func(m *queue.Message) error { return nil })
		stopKeep()
		select {
		case <-kept:
		case <-time.After(30 * time.Second):
			t.Fatal("the nacking subscriber did not stop")
		}
		if string(dead[0].Data) != "poison" || dead[0].Attributes["k"] != "v" {
			t.Fatalf("dead letter = %+v", dead[0])
		}
		expectNone(t, h.Q, h.Sub, 300*time.Millisecond)
	})
}

// RunPermanent checks that a handler error marked queue.Permanent skips the retries.
func RunPermanent(t *testing.T, open func(t *testing.T) Harness) {
	t.Run("PermanentErrorDeadLettersAtOnce", func(t *testing.T) {
		h := open(t)
		ctx := context.Background()
		if _, err := h.Q.Publish(ctx, h.Topic, []byte("hopeless"), nil); err != nil {
			t.Fatal(err)
		}
		got := receiveN(t, h.Q, h.Sub, 1, func(m *queue.Message) error { return queue.Permanent(errors.New("cannot ever work")) })
		if got[0].DeliveryAttempt != 1 {
			t.Fatalf("attempt %d", got[0].DeliveryAttempt)
		}
		dead := receiveN(t, h.Q, h.DeadSub, 1, func(m *queue.Message) error { return nil })
		if string(dead[0].Data) != "hopeless" || dead[0].Attributes["deadLetterReason"] != "cannot ever work" {
			t.Fatalf("dead letter = %+v", dead[0])
		}
		expectNone(t, h.Q, h.Sub, 300*time.Millisecond)
	})
}

// receiveN runs Receive until n deliveries have been handled by fn, then stops.
func receiveN(t *testing.T, q queue.Queue, sub string, n int, fn func(*queue.Message) error) []queue.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		got []queue.Message
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Receive(ctx, sub, func(_ context.Context, m *queue.Message) error {
			mu.Lock()
			if len(got) >= n {
				mu.Unlock()
				return errors.New("beyond the expected deliveries")
			}
			got = append(got, *m)
			enough := len(got) == n
			mu.Unlock()
			err := fn(m)
			if enough {
				// Let the ack or nack be recorded before stopping.
				go func() { time.Sleep(100 * time.Millisecond); cancel() }()
			}
			return err
		})
	}()
	awaitReturn(t, ctx, done)
	mu.Lock()
	defer mu.Unlock()
	if len(got) < n {
		t.Fatalf("received %d messages on %s, want %d", len(got), sub, n)
	}
	return got
}

func expectNone(t *testing.T, q queue.Queue, sub string, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var (
		mu    sync.Mutex
		extra *queue.Message
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Receive(ctx, sub, func(_ context.Context, m *queue.Message) error {
			mu.Lock()
			extra = m
			mu.Unlock()
			cancel()
			return errors.New("unexpected")
		})
	}()
	awaitReturn(t, ctx, done)
	mu.Lock()
	defer mu.Unlock()
	if extra != nil {
		t.Fatalf("unexpected delivery on %s: %+v", sub, extra)
	}
}

// awaitReturn waits for a Receive to return once ctx is done. The Pub/Sub client
// now and then does not return from Receive after cancellation (seen on pstest under
// load); what was received is complete by then, so the suite goes on rather than hang.
func awaitReturn(t *testing.T, ctx context.Context, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Log("Receive did not return 10s after cancellation; going on without it")
	}
}
