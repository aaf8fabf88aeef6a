package firestore_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/firestore"
)

// served says whether Firestore can run q without an index it would have to be
// told about, following https://firebase.google.com/docs/firestore/query-data/index-overview
// ("Indexes in Cloud Firestore"):
//   - single-field indexes, ascending and descending, exist for every field: a query
//     that filters and sorts on one field only needs nothing more;
//   - equality filters on several fields and no sort are served by merging
//     single-field indexes;
//   - anything else (equality on one field and a range or sort on another, or sorts
//     on two fields) needs a composite index with the equality fields first, then
//     the range and sort fields in the query's order and directions. The emulator
//     never asks for it; the real service answers FAILED_PRECONDITION.
func served(q firestore.Query, indexes []config.FirestoreIndex) (bool, string) {
	var sorted []config.IndexField // range, then sort fields; an order on the range field covers it
	for _, o := range q.Order {
		sorted = append(sorted, config.IndexField{Path: o.Field, Descending: o.Descending})
	}
	if q.Range != nil && !slices.ContainsFunc(sorted, func(f config.IndexField) bool { return f.Path == q.Range.Field }) {
		sorted = append([]config.IndexField{{Path: q.Range.Field}}, sorted...)
	}
	fields := map[string]bool{}
	for k := range q.Equal {
		fields[k] = true
	}
	for _, f := range sorted {
		fields[f.Path] = true
	}
	switch {
	case len(sorted) == 0:
		return true, "equality only: single-field indexes merged"
	case len(fields) == 1:
		return true, "one field: its single-field index"
	}
	for _, ix := range indexes {
		if ix.Collection != config.JobsCollection || len(ix.Fields) != len(q.Equal)+len(sorted) {
			continue
		}
		ok := true
		for i, f := range ix.Fields {
			if i < len(q.Equal) {
				_, eq := q.Equal[f.Path]
				ok = ok && eq
			} else {
				ok = ok && f == sorted[i-len(q.Equal)]
			}
		}
		if ok {
			return true, "composite index " + ix.Name
		}
	}
	return false, ""
}

// TestEveryQueryHasItsIndex plans every query List can issue and checks that the
// stack's indexes serve it: a query the emulator answers and the real service refuses
// would stop status, the review page, reconcile, drift and rollout in the cloud.
func TestEveryQueryHasItsIndex(t *testing.T) {
	n := 0
	for _, state := range []meta.State{"", meta.StateDone, meta.StateQuarantined, meta.StateProcessing} {
		for _, oldest := range []bool{false, true} {
			for _, byKey := range []bool{false, true} {
				for _, after := range []string{"", "k"} {
					for _, limit := range []int{0, 500} {
						f := meta.Filter{State: state, Oldest: oldest, ByKey: byKey, After: after, Limit: limit}
						q, err := firestore.Plan(f)
						if err != nil {
							continue // refused before it reaches Firestore
						}
						n++
						if ok, how := served(q, config.FirestoreIndexes); !ok {
							t.Errorf("%+v: query %+v has no index the stack creates (config.FirestoreIndexes)", f, q)
						} else {
							t.Logf("%+v: %s", f, how)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no query planned")
	}
}

// The rules themselves, on queries with a known answer.
func TestIndexRules(t *testing.T) {
	ix := []config.FirestoreIndex{{Name: "a-b", Collection: config.JobsCollection, Fields: []config.IndexField{{Path: "a"}, {Path: "b", Descending: true}}}}
	for _, c := range []struct {
		q    firestore.Query
		want bool
	}{
		{firestore.Query{Order: []firestore.Order{{Field: "b"}}}, true},
		{firestore.Query{Equal: map[string]any{"a": 1, "c": 2}}, true},
		{firestore.Query{Range: &firestore.Cond{Field: "k", Op: ">", Value: 1}, Order: []firestore.Order{{Field: "k"}}}, true},
		{firestore.Query{Equal: map[string]any{"a": 1}, Order: []firestore.Order{{Field: "b", Descending: true}}}, true},
		{firestore.Query{Equal: map[string]any{"a": 1}, Order: []firestore.Order{{Field: "b"}}}, false}, // direction differs
		{firestore.Query{Equal: map[string]any{"c": 1}, Order: []firestore.Order{{Field: "b", Descending: true}}}, false},
		{firestore.Query{Range: &firestore.Cond{Field: "k", Op: ">", Value: 1}, Order: []firestore.Order{{Field: "b"}}}, false},
	} {
		if got, _ := served(c.q, ix); got != c.want {
			t.Errorf("%s: served %v, want %v", fmt.Sprintf("%+v", c.q), got, c.want)
		}
	}
}
