// Package sqlite is the local meta.Store: one SQLite file in WAL mode. A claim is a
// single conditional upsert, so two processes sharing the file cannot both win.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/visionstack/visionstack/runtime/internal/sqlitedb"
	"github.com/visionstack/visionstack/runtime/meta"
)

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	key        TEXT PRIMARY KEY,
	state      TEXT NOT NULL,
	claimant   TEXT NOT NULL DEFAULT '',
	claimed_to INTEGER NOT NULL DEFAULT 0,
	attempts   INTEGER NOT NULL DEFAULT 0,
	doc        TEXT NOT NULL,
	created    INTEGER NOT NULL,
	updated    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated DESC);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, updated DESC);
CREATE TABLE IF NOT EXISTS baselines (
	name    TEXT PRIMARY KEY,
	data    BLOB NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
	name   TEXT PRIMARY KEY,
	holder TEXT NOT NULL,
	until  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
	name    TEXT PRIMARY KEY,
	data    BLOB NOT NULL,
	updated INTEGER NOT NULL
);
`

// Store is a meta.Store on SQLite.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

var _ meta.Store = (*Store)(nil)

// Open opens or creates the database at path.
func Open(path string) (*Store, error) {
	db, err := sqlitedb.Open(path, schema)
	if err != nil {
		return nil, fmt.Errorf("meta store: %w", err)
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Claim creates the job or takes over an expired claim in one statement.
func (s *Store) Claim(ctx context.Context, key string, src meta.Source, claimant string, lease time.Duration) (meta.Claim, error) {
	now := s.now()
	doc, err := json.Marshal(meta.Job{Key: key, Source: src, State: meta.StateProcessing, Created: now.UTC()})
	if err != nil {
		return meta.Claim{}, err
	}
	var (
		attempts int
		stored   string
	)
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO jobs(key, state, claimant, claimed_to, attempts, doc, created, updated)
		VALUES(?, 'processing', ?, ?, 1, ?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET
			claimant = excluded.claimant, claimed_to = excluded.claimed_to,
			attempts = jobs.attempts + 1, updated = excluded.updated
		WHERE jobs.state = 'processing' AND (jobs.claimed_to <= ? OR jobs.claimant = excluded.claimant)
		RETURNING attempts, doc`,
		key, claimant, now.Add(lease).UnixNano(), string(doc), now.UnixNano(), now.UnixNano(), now.UnixNano(),
	).Scan(&attempts, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		var state string
		if err := s.db.QueryRowContext(ctx, `SELECT state FROM jobs WHERE key = ?`, key).Scan(&state); err != nil {
			return meta.Claim{}, fmt.Errorf("claim %s: %w", key, err)
		}
		if meta.State(state).Final() {
			return meta.Claim{}, fmt.Errorf("claim %s: %w", key, meta.ErrDone)
		}
		return meta.Claim{}, fmt.Errorf("claim %s: %w", key, meta.ErrBusy)
	}
	if err != nil {
		return meta.Claim{}, fmt.Errorf("claim %s: %w", key, err)
	}
	var primed meta.Job
	if err := json.Unmarshal([]byte(stored), &primed); err != nil {
		return meta.Claim{}, fmt.Errorf("claim %s: corrupt job document: %w", key, err)
	}
	return meta.Claim{Key: key, Claimant: claimant, Attempts: attempts, Done: primed.Results}, nil
}

// Prime inserts the job unclaimed, with done as its results, unless it exists.
func (s *Store) Prime(ctx context.Context, key string, src meta.Source, done []meta.Result) error {
	now := s.now()
	doc, err := json.Marshal(meta.Job{Key: key, Source: src, State: meta.StateProcessing, Results: done, Created: now.UTC()})
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `
		INSERT INTO jobs(key, state, claimant, claimed_to, attempts, doc, created, updated)
		VALUES(?, 'processing', '', 0, 0, ?, ?, ?) ON CONFLICT(key) DO NOTHING`,
		key, string(doc), now.UnixNano(), now.UnixNano())
	if err != nil {
		return fmt.Errorf("prime %s: %w", key, err)
	}
	return nil
}

// Requeued moves the job's update time to now if it is as the reconciler read it.
func (s *Store) Requeued(ctx context.Context, key string, seen, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET updated = ? WHERE key = ? AND updated = ? AND state = 'processing'`,
		at.UnixNano(), key, seen.UnixNano())
	if err != nil {
		return fmt.Errorf("requeued %s: %w", key, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("requeued %s: %w", key, meta.ErrChanged)
	}
	return nil
}

// Complete records the final state if c still holds the claim.
func (s *Store) Complete(ctx context.Context, c meta.Claim, j meta.Job) error {
	if !j.State.Final() {
		return fmt.Errorf("complete %s: state %q is not final", c.Key, j.State)
	}
	now := s.now()
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT created FROM jobs WHERE key = ?`, c.Key).Scan(&created)
	if err != nil {
		return fmt.Errorf("complete %s: %w", c.Key, mapErr(err))
	}
	j.Key, j.Attempts, j.Claimant, j.ClaimedTo = c.Key, c.Attempts, "", time.Time{}
	j.Created, j.Updated = time.Unix(0, created).UTC(), now.UTC()
	doc, err := json.Marshal(j)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `
		UPDATE jobs SET state = ?, claimant = '', claimed_to = 0, doc = ?, updated = ?
		WHERE key = ? AND claimant = ? AND state = 'processing'`,
		string(j.State), string(doc), now.UnixNano(), c.Key, c.Claimant)
	if err != nil {
		return fmt.Errorf("complete %s: %w", c.Key, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("complete %s: %w", c.Key, meta.ErrLostClaim)
	}
	return nil
}

// Renew extends c's lease if c still holds the claim.
func (s *Store) Renew(ctx context.Context, c meta.Claim, lease time.Duration) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET claimed_to = ? WHERE key = ? AND claimant = ? AND state = 'processing'`,
		now.Add(lease).UnixNano(), c.Key, c.Claimant)
	if err != nil {
		return fmt.Errorf("renew %s: %w", c.Key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("renew %s: %w", c.Key, meta.ErrLostClaim)
	}
	return nil
}

// Release gives c's claim up so that a retry can take it at once.
func (s *Store) Release(ctx context.Context, c meta.Claim) error {
	_, err := s.db.ExecContext(ctx, `UPDATE jobs SET claimed_to = 0 WHERE key = ? AND claimant = ? AND state = 'processing'`, c.Key, c.Claimant)
	if err != nil {
		return fmt.Errorf("release %s: %w", c.Key, err)
	}
	return nil
}

// Get returns one job.
func (s *Store) Get(ctx context.Context, key string) (meta.Job, error) {
	row := s.db.QueryRowContext(ctx, `SELECT doc, state, claimant, claimed_to, attempts, updated FROM jobs WHERE key = ?`, key)
	j, err := scan(row)
	if err != nil {
		return meta.Job{}, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	return j, nil
}

// List returns jobs, newest first (oldest first with f.Oldest).
func (s *Store) List(ctx context.Context, f meta.Filter) ([]meta.Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	order := "updated DESC, key"
	if f.Oldest {
		order = "updated ASC, key"
	}
	if f.ByKey {
		if f.State != "" {
			return nil, meta.ErrByKeyWithState
		}
		order = "key"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT doc, state, claimant, claimed_to, attempts, updated FROM jobs
		WHERE (? = '' OR state = ?) AND key > ? ORDER BY `+order+` LIMIT ?`, string(f.State), string(f.State), f.After, limit)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []meta.Job
	for rows.Next() {
		j, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

func scan(r interface{ Scan(...any) error }) (meta.Job, error) {
	var (
		doc, state, claimant string
		claimedTo, updated   int64
		attempts             int
		j                    meta.Job
	)
	if err := r.Scan(&doc, &state, &claimant, &claimedTo, &attempts, &updated); err != nil {
		return j, err
	}
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return j, fmt.Errorf("corrupt job document: %w", err)
	}
	j.State, j.Claimant, j.Attempts = meta.State(state), claimant, attempts
	j.Updated = time.Unix(0, updated).UTC()
	if claimedTo > 0 {
		j.ClaimedTo = time.Unix(0, claimedTo).UTC()
	}
	return j, nil
}

func mapErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return meta.ErrNotFound
	}
	return err
}

// FreezeBaseline inserts data under name unless a row exists, and returns the row.
func (s *Store) FreezeBaseline(ctx context.Context, name string, data []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO baselines(name, data, created) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING`,
		name, data, s.now().UnixNano()); err != nil {
		return nil, fmt.Errorf("freeze baseline %s: %w", name, err)
	}
	return s.Baseline(ctx, name)
}

// Baseline reads the row stored under name.
func (s *Store) Baseline(ctx context.Context, name string) ([]byte, error) {
	return s.data(ctx, "baselines", "baseline", name)
}

// SaveCursor replaces the row stored under name.
func (s *Store) SaveCursor(ctx context.Context, name string, data []byte) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO cursors(name, data, updated) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET data = excluded.data, updated = excluded.updated`, name, data, s.now().UnixNano()); err != nil {
		return fmt.Errorf("save cursor %s: %w", name, err)
	}
	return nil
}

// Lease takes or renews name for holder: the row is written only when it is absent,
// holder's own, or expired.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) error {
	now := s.now()
	res, err := s.db.ExecContext(ctx, `INSERT INTO leases(name, holder, until) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until
		WHERE leases.holder = excluded.holder OR leases.until <= ?`, name, holder, now.Add(ttl).UnixNano(), now.UnixNano())
	if err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	var other string
	var until int64
	if err := s.db.QueryRowContext(ctx, `SELECT holder, until FROM leases WHERE name = ?`, name).Scan(&other, &until); err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	return fmt.Errorf("lease %s: %w", name, &meta.HeldError{Holder: other, Until: time.Unix(0, until)})
}

// EndLease deletes name's row if holder has it.
func (s *Store) EndLease(ctx context.Context, name, holder string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("end lease %s: %w", name, err)
	}
	return nil
}

// Cursor reads the row stored under name.
func (s *Store) Cursor(ctx context.Context, name string) ([]byte, error) {
	return s.data(ctx, "cursors", "cursor", name)
}

// data reads the data column of table's row name (a baseline, a cursor); what names
// it in errors.
func (s *Store) data(ctx context.Context, table, what, name string) ([]byte, error) {
	var data []byte
	err := s.db.QueryRowContext(ctx, `SELECT data FROM `+table+` WHERE name = ?`, name).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s %s: %w", what, name, meta.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return data, nil
}
