package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/metatest"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
)

func TestConformance(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "meta.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Two handles on one file behave like two processes: the claim is still exclusive.
func TestTwoHandlesShareClaims(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	a, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := a.Claim(ctx, "k", meta.Source{}, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "k", meta.Source{}, "b", time.Minute); err == nil {
		t.Fatal("second handle claimed a held job")
	}
}
