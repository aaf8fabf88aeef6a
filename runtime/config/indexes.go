package config

// IndexField is one field of a Firestore composite index.
type IndexField struct {
	Path       string
	Descending bool
}

// FirestoreIndex is a composite index the stack creates. Firestore serves a query
// that filters or sorts on more than one field only from such an index (the emulator
// never asks for one; the real service answers FAILED_PRECONDITION): every query the
// runtime issues is checked against this list (runtime/meta/firestore's index test).
type FirestoreIndex struct {
	Name       string // the stack's resource name after the database's: keep it, a new name is a new index
	Collection string
	Fields     []IndexField
}

// FirestoreIndexes are the composite indexes of a project's database: the job list
// by state, newest first (status, review, reconcile, drift, rollout) and oldest first.
var FirestoreIndexes = []FirestoreIndex{
	{Name: "jobs-state-updated", Collection: JobsCollection, Fields: []IndexField{{Path: "state"}, {Path: "updated", Descending: true}}},
	{Name: "jobs-state-updated-asc", Collection: JobsCollection, Fields: []IndexField{{Path: "state"}, {Path: "updated"}}},
}
