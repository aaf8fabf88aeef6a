// Package wait sleeps in a way a context can cut short.
package wait

import (
	"context"
	"time"
)

// For sleeps d, or returns ctx's error as soon as it ends.
func For(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
