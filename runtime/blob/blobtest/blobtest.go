// Package blobtest is the conformance suite every blob.Bucket backend passes.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/visionstack/visionstack/internal/racetest"
	"github.com/visionstack/visionstack/runtime/blob"
)

// Run runs the suite; open returns a new, empty bucket for each subtest.
func Run(t *testing.T, open func(t *testing.T) blob.Bucket) {
	ctx := context.Background()

	t.Run("PutReadRoundTrip", func(t *testing.T) {
		b := open(t)
		data := []byte("hello, bucket")
		a, err := b.Put(ctx, "dir/sub/obj.txt", data, blob.PutOptions{ContentType: "text/plain"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Size != int64(len(data)) || a.Generation == 0 || a.Name != "dir/sub/obj.txt" {
			t.Fatalf("attrs after put: %+v", a)
		}
		got, ra, err := blob.ReadAll(ctx, b, "dir/sub/obj.txt", 0)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		if ra.Generation != a.Generation || ra.Size != a.Size {
			t.Fatalf("reader attrs %+v differ from put attrs %+v", ra, a)
		}
	})

	t.Run("MetadataRoundTrip", func(t *testing.T) {
		b := open(t)
		md := map[string]string{"visionstack-key": "in/a.jpg#7"}
		if _, err := b.Put(ctx, "m.jpg", []byte("\xff\xd8\xff data"), blob.PutOptions{ContentType: "image/jpeg", Metadata: md}); err != nil {
			t.Fatal(err)
		}
		a, err := b.Attrs(ctx, "m.jpg")
		if err != nil || a.ContentType != "image/jpeg" || a.Metadata["visionstack-key"] != "in/a.jpg#7" {
			t.Fatalf("Attrs = %+v, %v", a, err)
		}
		// A rewrite without metadata drops it.
		if _, err := b.Put(ctx, "m.jpg", []byte("x"), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if a, _ := b.Attrs(ctx, "m.jpg"); a.Metadata["visionstack-key"] != "" {
			t.Fatalf("stale metadata after rewrite: %+v", a)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		b := open(t)
		if _, err := b.Attrs(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Attrs(missing) = %v, want ErrNotFound", err)
		}
		if _, _, err := b.NewReader(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("NewReader(missing) = %v, want ErrNotFound", err)
		}
		if err := b.Delete(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Delete(missing) = %v, want ErrNotFound", err)
		}
	})

	t.Run("GenerationChangesOnEveryWrite", func(t *testing.T) {
		b := open(t)
		seen := map[int64]bool{}
		for i := range 5 {
			a, err := b.Put(ctx, "o", []byte{byte(i)}, blob.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if seen[a.Generation] {
				t.Fatalf("generation %d repeated on write %d", a.Generation, i)
			}
			seen[a.Generation] = true
		}
	})

	t.Run("CreateIfAbsent", func(t *testing.T) {
		b := open(t)
		if _, err := b.Put(ctx, "once", []byte("first"), blob.PutOptions{IfGenerationMatch: blob.DoesNotExist()}); err != nil {
			t.Fatal(err)
		}
		_, err := b.Put(ctx, "once", []byte("second"), blob.PutOptions{IfGenerationMatch: blob.DoesNotExist()})
		if !errors.Is(err, blob.ErrPrecondition) {
			t.Fatalf("second create = %v, want ErrPrecondition", err)
		}
		got, _, _ := blob.ReadAll(ctx, b, "once", 0)
		if string(got) != "first" {
			t.Fatalf("content after refused create = %q", got)
		}
	})

	t.Run("IfGenerationMatch", func(t *testing.T) {
		b := open(t)
		a, err := b.Put(ctx, "g", []byte("v1"), blob.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stale := a.Generation - 1
		if _, err := b.Put(ctx, "g", []byte("v2"), blob.PutOptions{IfGenerationMatch: &stale}); !errors.Is(err, blob.ErrPrecondition) {
			t.Fatalf("stale generation = %v, want ErrPrecondition", err)
		}
		gen := a.Generation
		if _, err := b.Put(ctx, "g", []byte("v2"), blob.PutOptions{IfGenerationMatch: &gen}); err != nil {
			t.Fatalf("matching generation: %v", err)
		}
		missing := int64(12345)
		if _, err := b.Put(ctx, "absent", []byte("x"), blob.PutOptions{IfGenerationMatch: &missing}); !errors.Is(err, blob.ErrPrecondition) {
			t.Fatalf("generation on absent object = %v, want ErrPrecondition", err)
		}
	})

	t.Run("ConcurrentCreateHasOneWinner", func(t *testing.T) {
		b := open(t)
		wins, losers := racetest.Winners(8, func(i int) error {
			_, err := b.Put(ctx, "race", []byte(fmt.Sprint(i)), blob.PutOptions{IfGenerationMatch: blob.DoesNotExist()})
			return err
		})
		for _, err := range losers {
			if !errors.Is(err, blob.ErrPrecondition) {
				t.Errorf("loser: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d writers won a create-if-absent race, want 1", wins)
		}
	})

	t.Run("DeleteAndList", func(t *testing.T) {
		b := open(t)
		for _, n := range []string{"b/2", "a/1", "b/1", "c"} {
			if _, err := b.Put(ctx, n, []byte(n), blob.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := b.List(ctx, blob.Query{Prefix: "b/"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "b/1" || list[1].Name != "b/2" {
			t.Fatalf("List(b/) = %+v", list)
		}
		if err := b.Delete(ctx, "b/1"); err != nil {
			t.Fatal(err)
		}
		all, _ := b.List(ctx, blob.Query{})
		if len(all) != 3 {
			t.Fatalf("after delete List = %+v", all)
		}
	})

	// Paging: a walk of folders is not name order ('-' sorts before '/'), and a page
	// starts after the given name whether or not it exists.
	t.Run("ListPages", func(t *testing.T) {
		b := open(t)
		names := []string{"a/c/d", "a-c", "a/b", "ab", "a/b0", "b/1", "a0"}
		for _, n := range names {
			if _, err := b.Put(ctx, n, []byte(n), blob.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		pages := func(q blob.Query) []string {
			var got []string
			for range 20 {
				page, err := b.List(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > q.Limit {
					t.Fatalf("List(%+v) returned %d, more than the limit", q, len(page))
				}
				if len(page) == 0 {
					return got
				}
				for _, a := range page {
					got = append(got, a.Name)
				}
				q.After = page[len(page)-1].Name
			}
			t.Fatalf("List(%+v) never ended", q)
			return nil
		}
		if got, want := pages(blob.Query{Limit: 2}), []string{"a-c", "a/b", "a/b0", "a/c/d", "a0", "ab", "b/1"}; !slices.Equal(got, want) {
			t.Errorf("pages of 2 = %v, want %v", got, want)
		}
		if got, want := pages(blob.Query{Prefix: "a/", Limit: 1}), []string{"a/b", "a/b0", "a/c/d"}; !slices.Equal(got, want) {
			t.Errorf("pages of 1 under a/ = %v, want %v", got, want)
		}
		if got, want := pages(blob.Query{Prefix: "a", After: "a/bz", Limit: 3}), []string{"a/c/d", "a0", "ab"}; !slices.Equal(got, want) {
			t.Errorf("pages under a after a/bz = %v, want %v", got, want)
		}
		if got, _ := b.List(ctx, blob.Query{Prefix: "zz/"}); len(got) != 0 {
			t.Errorf("List(zz/) = %+v, want none", got)
		}
	})

	t.Run("ReadAllLimit", func(t *testing.T) {
		b := open(t)
		if _, err := b.Put(ctx, "big", make([]byte, 1000), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := blob.ReadAll(ctx, b, "big", 999); !errors.Is(err, blob.ErrTooLarge) {
			t.Fatalf("ReadAll over limit = %v, want ErrTooLarge", err)
		}
		if _, _, err := blob.ReadAll(ctx, b, "big", 1000); err != nil {
			t.Fatalf("ReadAll at limit: %v", err)
		}
	})

	t.Run("EscapingNamesRejected", func(t *testing.T) {
		b := open(t)
		for _, n := range EscapeAttempts {
			if _, err := b.Put(ctx, n, []byte("x"), blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidName) {
				t.Errorf("Put(%q) = %v, want ErrInvalidName", n, err)
			}
			if _, _, err := b.NewReader(ctx, n); !errors.Is(err, blob.ErrInvalidName) {
				t.Errorf("NewReader(%q) = %v, want ErrInvalidName", n, err)
			}
		}
	})
}

// EscapeAttempts are object names that must never be accepted.
var EscapeAttempts = []string{
	"", "../escape", "a/../../escape", "/etc/passwd", `..\escape`, `a\..\..\b`, "a//b", ".", "..",
	"a/./b", "nul\x00byte", "new\nline", string(make([]byte, blob.MaxNameBytes+1)), "\xff\xfe",
}
