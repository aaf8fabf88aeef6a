package local_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/queue/local"
	"github.com/visionstack/visionstack/runtime/queue/queuetest"
)

func fastOpts() local.Options {
	return local.Options{MaxAttempts: 5, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		AckDeadline: 2 * time.Second, Poll: 10 * time.Millisecond}
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		q, err := local.Open(filepath.Join(t.TempDir(), "q.db"), fastOpts())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return queuetest.Harness{Q: q, Topic: "jobs", Sub: "jobs", DeadSub: "jobs" + local.DeadLetterSuffix, MaxAttempts: 5}
	})
}

const crashEnv = "VISIONSTACK_QUEUE_CRASH_HELPER"

// TestRedeliveryAfterCrash kills a real process in the middle of handling a message
// and checks that a new process gets the message again once the lease runs out.
func TestRedeliveryAfterCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		// Child: take the message and die without acking, like a killed container.
		q, err := local.Open(path, local.Options{AckDeadline: 300 * time.Millisecond, Poll: 10 * time.Millisecond})
		if err != nil {
			os.Exit(2)
		}
		_ = q.Receive(context.Background(), "jobs", func(ctx context.Context, m *queue.Message) error {
			os.Exit(3)
			return nil
		})
		os.Exit(4)
	}
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := local.Open(path, fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.Publish(ctx, "jobs", []byte("survive"), nil); err != nil {
		t.Fatal(err)
	}
	crashInHandler(t, path)
	if n, _ := q.Pending(ctx, "jobs"); n != 1 {
		t.Fatalf("after the crash %d messages pending, want 1", n)
	}
	var got *queue.Message
	err = q.Drain(ctx, "jobs", func(_ context.Context, m *queue.Message) error { got = m; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || string(got.Data) != "survive" || got.DeliveryAttempt != 2 {
		t.Fatalf("redelivery = %+v, want attempt 2 of \"survive\"", got)
	}
}

// A handler that outlives the ack deadline keeps its lease: no concurrent redelivery.
func TestLeaseExtendedWhileHandling(t *testing.T) {
	opts := fastOpts()
	opts.AckDeadline = 100 * time.Millisecond
	opts.Workers = 2
	q, err := local.Open(filepath.Join(t.TempDir(), "q.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	_, _ = q.Publish(ctx, "jobs", []byte("slow"), nil)
	var calls atomic.Int32
	if err := q.Drain(ctx, "jobs", func(context.Context, *queue.Message) error {
		calls.Add(1)
		time.Sleep(400 * time.Millisecond)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("slow handler ran %d times, want 1", calls.Load())
	}
}

func TestHandlerPanicIsRetried(t *testing.T) {
	q, err := local.Open(filepath.Join(t.TempDir(), "q.db"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	_, _ = q.Publish(ctx, "jobs", []byte("x"), nil)
	var calls atomic.Int32
	_ = q.Drain(ctx, "jobs", func(context.Context, *queue.Message) error {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return nil
	})
	if calls.Load() != 2 {
		t.Fatalf("calls = %d, want 2 (panic, then retry)", calls.Load())
	}
}

// A message that kills the process every time it is handled: once it was delivered
// MaxAttempts times without an outcome, the next lease dead-letters it instead of
// handing it over again (before, it looped forever: attempts were checked only after
// a handler returned).
func TestPoisonMessageThatCrashesIsDeadLettered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	opts := fastOpts()
	opts.MaxAttempts = 2
	q, err := local.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	if _, err := q.Publish(ctx, "jobs", []byte("poison"), nil); err != nil {
		t.Fatal(err)
	}
	for range opts.MaxAttempts {
		crashInHandler(t, path)
	}
	time.Sleep(400 * time.Millisecond) // the dead process's lease runs out
	var calls atomic.Int32
	if err := q.Drain(ctx, "jobs", func(context.Context, *queue.Message) error { calls.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Fatalf("the poison message was handed over again (%d calls)", calls.Load())
	}
	dead, err := q.Messages(ctx, "jobs"+local.DeadLetterSuffix)
	if err != nil || len(dead) != 1 || string(dead[0].Data) != "poison" {
		t.Fatalf("dead-letter topic = %+v, %v", dead, err)
	}
	t.Logf("dead-letter attributes: %v", dead[0].Attributes)
}

// crashInHandler runs a process that takes a message of the queue at path and dies
// inside the handler, like a killed container.
func crashInHandler(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRedeliveryAfterCrash$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("helper process did not crash inside the handler: %v", err)
	}
}
