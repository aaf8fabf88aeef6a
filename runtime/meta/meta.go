// Package meta records jobs, image metadata and analysis results: Firestore in the
// cloud, SQLite locally. It is also how exactly-once effects are achieved on
// at-least-once delivery: a job is claimed with a create-if-absent write, and its
// final state is recorded last. Backends live in sibling packages (meta/sqlite,
// meta/firestore); metatest is their shared conformance suite.
package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// State of a job.
type State string

// Job states. Done and Quarantined are final.
const (
	StateProcessing  State = "processing"
	StateDone        State = "done"
	StateQuarantined State = "quarantined"
)

// Final reports whether nothing more will happen to the job.
func (s State) Final() bool { return s == StateDone || s == StateQuarantined }

// Errors from Claim.
var (
	// ErrDone: the job reached a final state before; the caller acks and does nothing.
	ErrDone = errors.New("job already completed")
	// ErrBusy: another worker holds an unexpired claim; the caller retries later.
	ErrBusy = errors.New("job claimed by another worker")
	// ErrNotFound: no such job.
	ErrNotFound = errors.New("job not found")
	// ErrLostClaim: the claim expired and another worker took the job over.
	ErrLostClaim = errors.New("claim lost to another worker")
)

// Source says where the original came from.
type Source struct {
	Bucket     string `json:"bucket"`
	Object     string `json:"object"`
	Generation int64  `json:"generation"`
}

// Box is a normalised rectangle, 0..1, in the oriented image.
type Box struct {
	XMin float64 `json:"xMin"`
	XMax float64 `json:"xMax"`
	YMin float64 `json:"yMin"`
	YMax float64 `json:"yMax"`
}

// IoU is the intersection over union of two boxes.
func (b Box) IoU(o Box) float64 {
	ix := max(0, min(b.XMax, o.XMax)-max(b.XMin, o.XMin))
	iy := max(0, min(b.YMax, o.YMax)-max(b.YMin, o.YMin))
	inter := ix * iy
	union := (b.XMax-b.XMin)*(b.YMax-b.YMin) + (o.XMax-o.XMin)*(o.YMax-o.YMin) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// Suppress is greedy non-maximum suppression: it sorts items strongest first (in
// place, stable) and keeps each that overlaps none already kept, at most limit
// (0: all). The built-in face model and the ONNX decoders both suppress with it.
func Suppress[T any](items []T, score func(T) float64, overlaps func(kept, item T) bool, limit int) []T {
	sort.SliceStable(items, func(i, j int) bool { return score(items[i]) > score(items[j]) })
	var kept []T
	for _, it := range items {
		if limit > 0 && len(kept) >= limit {
			break
		}
		if !slices.ContainsFunc(kept, func(k T) bool { return overlaps(k, it) }) {
			kept = append(kept, it)
		}
	}
	return kept
}

// Detection is one prediction: a label with a confidence, and a box for detections.
type Detection struct {
	Label      string  `json:"label"`
	Confidence float64 `json:"confidence"`
	Box        *Box    `json:"box,omitempty"`
}

// Result is one analysis' output for one image.
type Result struct {
	Analysis   string      `json:"analysis"`
	Model      string      `json:"model"`
	Detections []Detection `json:"detections"`
	LatencyMS  float64     `json:"latencyMs"`
	// ModelVersion and DeployedModel say which version of the model produced this
	// result, and which deployment served it (empty when the model did not say).
	ModelVersion  string `json:"modelVersion,omitempty"`
	DeployedModel string `json:"deployedModel,omitempty"`
	// Shadow is the analysis' shadow model's result on the same input (config
	// analyses[].shadow): stored for comparison, never acted on.
	Shadow *Result `json:"shadow,omitempty"`
	// Error: the shadow's call failed (only in a Shadow; a failed analysis has no result).
	Error string `json:"error,omitempty"`
	// Candidates are what the model saw below the analysis' threshold (model.
	// Prediction.Candidates), for this job's re-check only: never stored, nil when
	// the model gave none or the result was read back from the store.
	Candidates []Detection `json:"-"`
}

// WithoutShadows returns rs without their shadow results: what leaves the service
// (API answers, processed events), so no caller acts on a shadow model's answer.
func WithoutShadows(rs []Result) []Result {
	out := make([]Result, len(rs))
	for i, r := range rs {
		r.Shadow = nil
		out[i] = r
	}
	return out
}

// Output is an object the pipeline wrote.
type Output struct {
	Bucket     string `json:"bucket"`
	Object     string `json:"object"`
	Generation int64  `json:"generation"`
	Bytes      int64  `json:"bytes"`
}

// Job is everything recorded about one image.
type Job struct {
	Key    string `json:"key"` // bucket/object#generation or sha256:…
	Source Source `json:"source"`
	// Name is the file name the uploader gave a sync upload (its form's file name),
	// which the original's object, named by its content, does not say.
	Name     string   `json:"name,omitempty"`
	State    State    `json:"state"`
	Attempts int      `json:"attempts"`
	Reason   string   `json:"reason,omitempty"` // why it was quarantined
	Format   string   `json:"format,omitempty"`
	Width    int      `json:"width,omitempty"` // oriented original
	Height   int      `json:"height,omitempty"`
	Bytes    int64    `json:"bytes,omitempty"`
	Results  []Result `json:"results,omitempty"`
	Outputs  []Output `json:"outputs,omitempty"`
	// Rechecked counts the faces the anonymization re-check found and anonymized
	// that the analysis had missed or left visible.
	Rechecked int       `json:"rechecked,omitempty"`
	Claimant  string    `json:"claimant,omitempty"`
	ClaimedTo time.Time `json:"claimedTo,omitzero"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
}

// Claim is held while a worker processes a job.
type Claim struct {
	Key      string
	Claimant string
	Attempts int // including this one
	// Done holds the results Prime recorded for the job: analyses the service
	// already ran (the sync API) and the push path reuses instead of re-running.
	Done []Result
}

// Filter selects jobs for List.
type Filter struct {
	State  State // empty: any
	Limit  int   // ≤ 0: all
	Oldest bool  // oldest first (by last update) instead of newest first
	// ByKey lists in key order instead, from the first key after After: a caller
	// going through every job pages with the last key of each page. It takes no
	// State (Firestore would need an index per state for that order).
	ByKey bool
	After string
}

// ErrHeld: another holder has the lease (Store.Lease); a *HeldError says who.
var ErrHeld = errors.New("lease held by another")

// HeldError is Lease's refusal: who holds the lease, until when.
type HeldError struct {
	Holder string
	Until  time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%v: %s until %s", ErrHeld, e.Holder, e.Until.UTC().Format(time.RFC3339))
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// ErrChanged: the job changed since it was read (Store.Requeued).
var ErrChanged = errors.New("job changed since it was read")

// ErrByKeyWithState: a Filter asked for key order and a state together.
var ErrByKeyWithState = errors.New("list jobs: key order (ByKey) takes no state filter")

// Store is the metadata store.
type Store interface {
	// Claim takes a job for claimant for lease, creating it if absent. A final job
	// gives ErrDone; a job another claimant holds with an unexpired lease gives ErrBusy;
	// an expired claim is taken over (Attempts grows).
	Claim(ctx context.Context, key string, src Source, claimant string, lease time.Duration) (Claim, error)
	// Prime records a job before its task is queued, unclaimed, with the results the
	// service already has (the sync API's), unless the job exists. The push path reads
	// them back from its Claim, never from a message: a message's content is not
	// trusted. A primed job nobody processes is found by the reconciler.
	Prime(ctx context.Context, key string, src Source, done []Result) error
	// Complete records the final state; j.Key must be claimed by c.Claimant, else
	// ErrLostClaim. j.State must be final.
	Complete(ctx context.Context, c Claim, j Job) error
	// Renew extends a held claim to lease from now: the heartbeat of a running job,
	// so leases can be short and a dead worker's claim frees quickly. ErrLostClaim
	// when c no longer holds it (expired and taken over, or final).
	Renew(ctx context.Context, c Claim, lease time.Duration) error
	// Release gives a claim up (after a transient error) so a retry can take it at once.
	Release(ctx context.Context, c Claim) error
	// Requeued records that the reconciler re-queued the job it read last updated at
	// seen: its update time becomes at (the reconciler's clock, which judges
	// staleness), so the next passes (on every instance) leave it alone for their
	// stale time. ErrChanged when the job is no longer as read —
	// updated since (re-queued by another instance, or claimed: a claim updates it) or
	// final.
	Requeued(ctx context.Context, key string, seen, at time.Time) error
	// Get returns one job or ErrNotFound.
	Get(ctx context.Context, key string) (Job, error)
	// List returns jobs, newest first (oldest first with f.Oldest), by last update;
	// or with f.ByKey a page in key order.
	List(ctx context.Context, f Filter) ([]Job, error)
	// FreezeBaseline stores data under name unless something is stored there already,
	// and returns what is stored: the first writer wins and every caller agrees on
	// it (the drift monitor's baseline, frozen once for all instances).
	FreezeBaseline(ctx context.Context, name string, data []byte) ([]byte, error)
	// Baseline returns what FreezeBaseline stored under name, or ErrNotFound.
	Baseline(ctx context.Context, name string) ([]byte, error)
	// SaveCursor stores data under name, replacing what was there: where a long
	// command (backfill) got to, so a restart resumes there.
	SaveCursor(ctx context.Context, name string, data []byte) error
	// Cursor returns what SaveCursor stored last under name, or ErrNotFound.
	Cursor(ctx context.Context, name string) ([]byte, error)
	// Lease takes the lease name for holder, or renews it, until ttl from now: one
	// holder at a time (a rollout's runner). A *HeldError (ErrHeld) while another
	// holder's lease runs; an expired one is taken over.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) error
	// EndLease gives the lease up if holder has it (nothing happens otherwise).
	EndLease(ctx context.Context, name, holder string) error
	Close() error
}

// KeepAlive calls renew every interval until stop is called: the heartbeat of a job's
// claim and of a rollout's lease. The first error renew returns (the claim or lease was
// lost; renew itself logs and swallows what is worth another try) cancels the returned
// context with that error, so the holder stops instead of working beside the new one.
// stop waits for a renewal in flight, so nothing is renewed after it returns.
func KeepAlive(ctx context.Context, every time.Duration, renew func(context.Context) error) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := renew(ctx); err != nil {
					cancel(err)
					return
				}
			}
		}
	})
	return ctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}
