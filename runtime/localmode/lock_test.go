package localmode_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/localmode"
	"github.com/visionstack/visionstack/testdata/photos"
)

// Issue 24 #9: one writer per local data directory, enforced by the kernel: a second
// Open (another `run` or `serve` on the same --out/--data) is refused and says who
// holds it, another process cannot take the lock either, and it is free again after
// Close.
func TestOneProcessPerDataDirectory(t *testing.T) {
	cfg, err := config.LoadFile(photos.DemoProject())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env, err := localmode.Open(cfg, dir, localmode.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := localmode.Open(cfg, dir, localmode.Options{}); !errors.Is(err, localmode.ErrInUse) {
		t.Fatalf("a second Open of %s: %v, want ErrInUse", dir, err)
	}
	if flock, err := exec.LookPath("flock"); err == nil {
		if err := exec.Command(flock, "-n", filepath.Join(dir, localmode.LockFile), "true").Run(); err == nil {
			t.Error("another process took the data directory's lock while it was held")
		}
	}
	if err := env.Close(); err != nil {
		t.Fatal(err)
	}
	env, err = localmode.Open(cfg, dir, localmode.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	env.Close()
}
