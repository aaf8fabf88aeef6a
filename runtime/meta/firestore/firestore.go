// Package firestore is the cloud meta.Store. A job is one document; it is claimed
// with Create (which fails with AlreadyExists), taken over or completed inside
// transactions that check the claimant, so at-least-once deliveries have one effect.
//
// Document ids are the SHA-256 of the job key: keys hold '/' and may be long.
// The job itself is kept as JSON in "doc" (lossless: generations are int64, which a
// Firestore double would round); state, claimant, claimedTo, attempts, created and
// updated are native fields for queries and the console.
package firestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	fs "cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
)

// Collection holding the jobs (the stack creates its index).
const Collection = config.JobsCollection

// BaselinesCollection holds frozen drift baselines, one document per name.
const BaselinesCollection = "baselines"

// CursorsCollection holds where long commands (backfill) got to, one document per name.
const CursorsCollection = "cursors"

// LeasesCollection holds the leases (Store.Lease): one document a name.
const LeasesCollection = "leases"

type leaseDoc struct {
	Holder string    `firestore:"holder"`
	Until  time.Time `firestore:"until"`
}

// Store is a meta.Store on Firestore.
type Store struct {
	client *fs.Client
	col    *fs.CollectionRef
	now    func() time.Time
}

var _ meta.Store = (*Store)(nil)

// New wraps a client; Close closes it.
func New(client *fs.Client) *Store {
	return &Store{client: client, col: client.Collection(Collection), now: time.Now}
}

// Close closes the client.
func (s *Store) Close() error { return s.client.Close() }

type record struct {
	Key       string    `firestore:"key"`
	State     string    `firestore:"state"`
	Claimant  string    `firestore:"claimant"`
	ClaimedTo time.Time `firestore:"claimedTo"`
	Attempts  int       `firestore:"attempts"`
	Created   time.Time `firestore:"created"`
	Updated   time.Time `firestore:"updated"`
	Doc       string    `firestore:"doc"`
}

func (s *Store) ref(key string) *fs.DocumentRef {
	sum := sha256.Sum256([]byte(key))
	return s.col.Doc(hex.EncodeToString(sum[:]))
}

// Claim creates the job, or takes over an expired claim.
func (s *Store) Claim(ctx context.Context, key string, src meta.Source, claimant string, lease time.Duration) (meta.Claim, error) {
	now := s.now().UTC()
	doc, err := json.Marshal(meta.Job{Key: key, Source: src, State: meta.StateProcessing, Created: now})
	if err != nil {
		return meta.Claim{}, err
	}
	ref := s.ref(key)
	_, err = ref.Create(ctx, record{Key: key, State: string(meta.StateProcessing), Claimant: claimant,
		ClaimedTo: now.Add(lease), Attempts: 1, Created: now, Updated: now, Doc: string(doc)})
	if err == nil {
		return meta.Claim{Key: key, Claimant: claimant, Attempts: 1}, nil
	}
	if status.Code(err) != codes.AlreadyExists {
		return meta.Claim{}, fmt.Errorf("claim %s: %w", key, err)
	}
	var c meta.Claim
	err = s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		switch {
		case meta.State(r.State).Final():
			return meta.ErrDone
		case r.Claimant != claimant && r.ClaimedTo.After(now):
			return meta.ErrBusy
		}
		var primed meta.Job
		if err := json.Unmarshal([]byte(r.Doc), &primed); err != nil {
			return fmt.Errorf("corrupt job document: %w", err)
		}
		c = meta.Claim{Key: key, Claimant: claimant, Attempts: r.Attempts + 1, Done: primed.Results}
		return tx.Update(ref, []fs.Update{{Path: "claimant", Value: claimant}, {Path: "claimedTo", Value: now.Add(lease)},
			{Path: "attempts", Value: c.Attempts}, {Path: "updated", Value: now}})
	})
	if err != nil {
		return meta.Claim{}, fmt.Errorf("claim %s: %w", key, mapErr(err))
	}
	return c, nil
}

// Prime creates the job unclaimed, with done as its results, unless it exists.
func (s *Store) Prime(ctx context.Context, key string, src meta.Source, done []meta.Result) error {
	now := s.now().UTC()
	doc, err := json.Marshal(meta.Job{Key: key, Source: src, State: meta.StateProcessing, Results: done, Created: now})
	if err != nil {
		return err
	}
	_, err = s.ref(key).Create(ctx, record{Key: key, State: string(meta.StateProcessing), ClaimedTo: time.Unix(0, 0).UTC(),
		Created: now, Updated: now, Doc: string(doc)})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("prime %s: %w", key, err)
	}
	return nil
}

// Complete records the final state if c still holds the claim.
func (s *Store) Complete(ctx context.Context, c meta.Claim, j meta.Job) error {
	if !j.State.Final() {
		return fmt.Errorf("complete %s: state %q is not final", c.Key, j.State)
	}
	ref := s.ref(c.Key)
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		if r.Claimant != c.Claimant || r.State != string(meta.StateProcessing) {
			return meta.ErrLostClaim
		}
		now := s.now().UTC()
		j.Key, j.Attempts, j.Claimant, j.ClaimedTo, j.Created, j.Updated = c.Key, c.Attempts, "", time.Time{}, r.Created, now
		doc, err := json.Marshal(j)
		if err != nil {
			return err
		}
		return tx.Set(ref, record{Key: c.Key, State: string(j.State), Attempts: c.Attempts, Created: r.Created, Updated: now, Doc: string(doc)})
	})
	if err != nil {
		return fmt.Errorf("complete %s: %w", c.Key, mapErr(err))
	}
	return nil
}

// Renew extends c's lease if c still holds the claim.
func (s *Store) Renew(ctx context.Context, c meta.Claim, lease time.Duration) error {
	if err := s.setLease(ctx, c, func() time.Time { return s.now().UTC().Add(lease) }, meta.ErrLostClaim); err != nil {
		return fmt.Errorf("renew %s: %w", c.Key, mapErr(err))
	}
	return nil
}

// Requeued moves the job's update time to now if it is as the reconciler read it: in
// a transaction, so of two instances re-queuing it at once one wins.
func (s *Store) Requeued(ctx context.Context, key string, seen, at time.Time) error {
	ref := s.ref(key)
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		if !r.Updated.Equal(seen) || r.State != string(meta.StateProcessing) {
			return meta.ErrChanged
		}
		return tx.Update(ref, []fs.Update{{Path: "updated", Value: at.UTC()}})
	})
	if err != nil {
		return fmt.Errorf("requeued %s: %w", key, mapErr(err))
	}
	return nil
}

// Release gives c's claim up so that a retry can take it at once.
func (s *Store) Release(ctx context.Context, c meta.Claim) error {
	if err := s.setLease(ctx, c, func() time.Time { return time.Unix(0, 0).UTC() }, nil); err != nil {
		return fmt.Errorf("release %s: %w", c.Key, mapErr(err))
	}
	return nil
}

// setLease moves the end of c's lease to to() if c still holds the claim; otherwise
// it returns lost (nil: nothing to do).
func (s *Store) setLease(ctx context.Context, c meta.Claim, to func() time.Time, lost error) error {
	ref := s.ref(c.Key)
	return s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		if r.Claimant != c.Claimant || r.State != string(meta.StateProcessing) {
			return lost
		}
		return tx.Update(ref, []fs.Update{{Path: "claimedTo", Value: to()}})
	})
}

// Get returns one job.
func (s *Store) Get(ctx context.Context, key string) (meta.Job, error) {
	snap, err := s.ref(key).Get(ctx)
	if err != nil {
		return meta.Job{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	return decode(snap)
}

// Query is the shape of a List query, what Firestore's index rules look at: the
// fields filtered by equality, the one filtered by a range, and the sort order. List
// builds its query from it, and the index test checks every shape it can take
// against the indexes the stack creates (config.FirestoreIndexes).
type Query struct {
	Equal map[string]any // field == value
	Range *Cond          // field > value
	Order []Order
}

// Cond is a range filter.
type Cond struct {
	Field, Op string
	Value     any
}

// Order is one sort key.
type Order struct {
	Field      string
	Descending bool
}

// Plan is the query List issues for f.
func Plan(f meta.Filter) (Query, error) {
	switch {
	case f.ByKey && f.State != "":
		return Query{}, meta.ErrByKeyWithState
	case f.ByKey && f.After != "":
		return Query{Range: &Cond{"key", ">", f.After}, Order: []Order{{Field: "key"}}}, nil
	case f.ByKey:
		return Query{Order: []Order{{Field: "key"}}}, nil
	}
	q := Query{Order: []Order{{Field: "updated", Descending: !f.Oldest}}}
	if f.State != "" {
		q.Equal = map[string]any{"state": string(f.State)}
	}
	return q, nil
}

// List returns jobs, newest first (or as f says). With a state filter it needs a
// composite index (state, updated), which the stack creates.
func (s *Store) List(ctx context.Context, f meta.Filter) ([]meta.Job, error) {
	plan, err := Plan(f)
	if err != nil {
		return nil, err
	}
	q := s.col.Query
	for _, k := range slices.Sorted(maps.Keys(plan.Equal)) {
		q = q.Where(k, "==", plan.Equal[k])
	}
	if c := plan.Range; c != nil {
		q = q.Where(c.Field, c.Op, c.Value)
	}
	for _, o := range plan.Order {
		dir := fs.Asc
		if o.Descending {
			dir = fs.Desc
		}
		q = q.OrderBy(o.Field, dir)
	}
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	it := q.Documents(ctx)
	defer it.Stop()
	var out []meta.Job
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		j, err := decode(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
}

// load reads a job's record inside a transaction.
func load(tx *fs.Transaction, ref *fs.DocumentRef) (record, error) {
	var r record
	snap, err := tx.Get(ref)
	if err != nil {
		return r, err
	}
	return r, snap.DataTo(&r)
}

func decode(snap *fs.DocumentSnapshot) (meta.Job, error) {
	var r record
	if err := snap.DataTo(&r); err != nil {
		return meta.Job{}, fmt.Errorf("job %s: %w", snap.Ref.ID, err)
	}
	var j meta.Job
	if err := json.Unmarshal([]byte(r.Doc), &j); err != nil {
		return meta.Job{}, fmt.Errorf("job %s: corrupt document: %w", snap.Ref.ID, err)
	}
	j.Key, j.State, j.Claimant, j.Attempts, j.Updated = r.Key, meta.State(r.State), r.Claimant, r.Attempts, r.Updated
	if j.Created.IsZero() {
		j.Created = r.Created
	}
	if r.State == string(meta.StateProcessing) && r.ClaimedTo.After(time.Unix(0, 0)) {
		j.ClaimedTo = r.ClaimedTo
	}
	return j, nil
}

func mapErr(err error) error {
	switch {
	case errors.Is(err, meta.ErrDone), errors.Is(err, meta.ErrBusy), errors.Is(err, meta.ErrLostClaim):
		return err
	case status.Code(err) == codes.NotFound:
		return meta.ErrNotFound
	}
	return err
}

type baselineDoc struct {
	Data    []byte    `firestore:"data"`
	Created time.Time `firestore:"created"`
}

// FreezeBaseline creates the document unless it exists (Create fails with
// AlreadyExists), then returns what is stored.
func (s *Store) FreezeBaseline(ctx context.Context, name string, data []byte) ([]byte, error) {
	_, err := s.client.Collection(BaselinesCollection).Doc(name).Create(ctx, baselineDoc{Data: data, Created: s.now().UTC()})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return nil, fmt.Errorf("freeze baseline %s: %w", name, err)
	}
	return s.Baseline(ctx, name)
}

// Baseline reads the document stored under name.
func (s *Store) Baseline(ctx context.Context, name string) ([]byte, error) {
	return s.data(ctx, BaselinesCollection, "baseline", name)
}

type cursorDoc struct {
	Data    []byte    `firestore:"data"`
	Updated time.Time `firestore:"updated"`
}

// SaveCursor replaces the document stored under name.
func (s *Store) SaveCursor(ctx context.Context, name string, data []byte) error {
	if _, err := s.client.Collection(CursorsCollection).Doc(name).Set(ctx, cursorDoc{Data: data, Updated: s.now().UTC()}); err != nil {
		return fmt.Errorf("save cursor %s: %w", name, err)
	}
	return nil
}

// Lease takes or renews name for holder in a transaction: of two runners asking at
// once, one gets it.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) error {
	ref := s.client.Collection(LeasesCollection).Doc(name)
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		now := s.now().UTC()
		snap, err := tx.Get(ref)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if err == nil {
			var l leaseDoc
			if err := snap.DataTo(&l); err != nil {
				return err
			}
			if l.Holder != holder && l.Until.After(now) {
				return &meta.HeldError{Holder: l.Holder, Until: l.Until}
			}
		}
		return tx.Set(ref, leaseDoc{Holder: holder, Until: now.Add(ttl)})
	})
	if err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	return nil
}

// EndLease deletes name's document if holder has it.
func (s *Store) EndLease(ctx context.Context, name, holder string) error {
	ref := s.client.Collection(LeasesCollection).Doc(name)
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		snap, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		var l leaseDoc
		if err := snap.DataTo(&l); err != nil || l.Holder != holder {
			return err
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("end lease %s: %w", name, err)
	}
	return nil
}

// Cursor reads the document stored under name.
func (s *Store) Cursor(ctx context.Context, name string) ([]byte, error) {
	return s.data(ctx, CursorsCollection, "cursor", name)
}

// data reads the data field of collection's document name (a baseline, a cursor);
// what names it in errors.
func (s *Store) data(ctx context.Context, collection, what, name string) ([]byte, error) {
	snap, err := s.client.Collection(collection).Doc(name).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%s %s: %w", what, name, meta.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	var d struct {
		Data []byte `firestore:"data"`
	}
	if err := snap.DataTo(&d); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return d.Data, nil
}
