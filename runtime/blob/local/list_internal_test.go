package local

import (
	"context"
	"fmt"
	"testing"

	"github.com/visionstack/visionstack/runtime/blob"
)

// Issue 24 #9: going through a bucket a page at a time costs about the bucket once,
// not once per page. 2000 objects in 20 folders, read 100 at a time: the old walk of
// the whole tree for every page looked at 20 pages × 2020 entries.
func TestListPagesDoNotRewalkTheBucket(t *testing.T) {
	b, err := Open(t.TempDir(), "incoming")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 2000
	for i := range n {
		if _, err := b.Put(ctx, fmt.Sprintf("f%02d/img-%04d.jpg", i%20, i), []byte("x"), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.visited.Store(0)
	seen, after := 0, ""
	for {
		page, err := b.List(ctx, blob.Query{After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			if a.Name <= after {
				t.Fatalf("%s after %s: not in name order", a.Name, after)
			}
			after = a.Name
		}
		seen += len(page)
	}
	if seen != n {
		t.Fatalf("listed %d of %d", seen, n)
	}
	if v := b.visited.Load(); v > 3*n {
		t.Errorf("the pages looked at %d entries for %d objects: each page walks the bucket again", v, n)
	}
	t.Logf("%d entries looked at for %d objects in pages of 100", b.visited.Load(), n)
}
