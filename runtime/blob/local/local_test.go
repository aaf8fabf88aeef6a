package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/blobtest"
	"github.com/visionstack/visionstack/runtime/blob/local"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		b, err := local.Open(t.TempDir(), "test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// A symlink planted inside the directory must not lead reads or writes outside it.
func TestSymlinkEscapeRejected(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	b, err := local.Open(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, _, err := b.NewReader(ctx, "link/secret"); err == nil {
		t.Fatal("read through a symlink escaped the bucket")
	}
	if _, err := b.Put(ctx, "link/planted", []byte("x"), blob.PutOptions{}); err == nil {
		t.Fatal("write through a symlink escaped the bucket")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("file appeared outside the bucket")
	}
}

func TestReservedTempDirNotAddressable(t *testing.T) {
	b, err := local.Open(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Put(context.Background(), ".visionstack-tmp/x", []byte("x"), blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidName) {
		t.Fatalf("Put into temp dir = %v", err)
	}
}

func FuzzValidateName(f *testing.F) {
	for _, n := range blobtest.EscapeAttempts {
		f.Add(n)
	}
	f.Add("photos/2024/a.jpg")
	f.Fuzz(func(t *testing.T, name string) {
		if blob.ValidateName(name) != nil {
			return
		}
		// An accepted name, joined under a root, stays under it.
		root := "/bucket"
		p := filepath.Join(root, filepath.FromSlash(name))
		if rel, err := filepath.Rel(root, p); err != nil || rel == ".." || len(rel) >= 3 && rel[:3] == "../" || rel == "." {
			t.Fatalf("accepted name %q resolves to %q outside the root", name, p)
		}
	})
}
