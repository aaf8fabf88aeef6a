// Package metatest is the conformance suite every meta.Store backend passes.
package metatest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/racetest"
	"github.com/visionstack/visionstack/runtime/meta"
)

// Run runs the suite; open returns a new, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) meta.Store) {
	ctx := context.Background()
	src := meta.Source{Bucket: "in", Object: "a.jpg", Generation: 7}

	t.Run("ClaimCompleteGet", func(t *testing.T) {
		s := open(t)
		c, err := s.Claim(ctx, "k1", src, "w1", time.Minute)
		if err != nil || c.Attempts != 1 {
			t.Fatalf("first claim = %+v, %v", c, err)
		}
		j, err := s.Get(ctx, "k1")
		if err != nil || j.State != meta.StateProcessing || j.Source != src {
			t.Fatalf("Get while processing = %+v, %v", j, err)
		}
		done := meta.Job{State: meta.StateDone, Source: src, Width: 640, Height: 480, Format: "jpeg",
			Results: []meta.Result{{Analysis: "faces", Model: "builtin:faces", Detections: []meta.Detection{
				{Label: "face", Confidence: 0.9, Box: &meta.Box{XMin: 0.1, XMax: 0.2, YMin: 0.3, YMax: 0.4}}}}},
			Outputs: []meta.Output{{Bucket: "out", Object: "a.jpg", Generation: 3, Bytes: 100}}}
		if err := s.Complete(ctx, c, done); err != nil {
			t.Fatal(err)
		}
		j, err = s.Get(ctx, "k1")
		if err != nil {
			t.Fatal(err)
		}
		if j.State != meta.StateDone || j.Width != 640 || len(j.Results) != 1 || j.Results[0].Detections[0].Box.XMax != 0.2 ||
			len(j.Outputs) != 1 || j.Attempts != 1 || j.Created.IsZero() || j.Updated.Before(j.Created) {
			t.Fatalf("Get after complete = %+v", j)
		}
		if _, err := s.Claim(ctx, "k1", src, "w2", time.Minute); !errors.Is(err, meta.ErrDone) {
			t.Fatalf("claim of done job = %v, want ErrDone", err)
		}
	})

	t.Run("PrimedResultsComeWithTheClaim", func(t *testing.T) {
		s := open(t)
		done := []meta.Result{{Analysis: "faces", Model: "builtin:faces", Detections: []meta.Detection{{Label: "face", Confidence: 0.9}}}}
		if err := s.Prime(ctx, "k", src, done); err != nil {
			t.Fatal(err)
		}
		// The first writer wins: a second Prime (a repeat upload) changes nothing.
		if err := s.Prime(ctx, "k", src, nil); err != nil {
			t.Fatal(err)
		}
		j, err := s.Get(ctx, "k")
		if err != nil || j.State != meta.StateProcessing || j.Claimant != "" || !j.ClaimedTo.IsZero() || j.Attempts != 0 {
			t.Fatalf("primed job = %+v, %v; want processing, unclaimed", j, err)
		}
		c, err := s.Claim(ctx, "k", src, "w1", time.Minute)
		if err != nil || c.Attempts != 1 || len(c.Done) != 1 || c.Done[0].Detections[0].Confidence != 0.9 {
			t.Fatalf("claim of a primed job = %+v, %v; want attempt 1 with the primed results", c, err)
		}
		if err := s.Complete(ctx, c, meta.Job{State: meta.StateDone, Results: done}); err != nil {
			t.Fatal(err)
		}
		if err := s.Prime(ctx, "k", src, nil); err != nil {
			t.Fatal(err)
		}
		if j, _ := s.Get(ctx, "k"); j.State != meta.StateDone || len(j.Results) != 1 {
			t.Fatalf("Prime changed a final job: %+v", j)
		}
		// A job that was never primed brings no results.
		c, err = s.Claim(ctx, "fresh", src, "w1", time.Minute)
		if err != nil || len(c.Done) != 0 {
			t.Fatalf("claim of a fresh job = %+v, %v", c, err)
		}
	})

	// The reconciler marks a job it re-queued, on what it read: of two instances
	// re-queuing the same read one wins, and a job claimed or changed since is left.
	t.Run("RequeuedOnceOnWhatWasRead", func(t *testing.T) {
		s := open(t)
		if err := s.Prime(ctx, "k", src, nil); err != nil {
			t.Fatal(err)
		}
		seen, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		at := seen.Updated.Add(time.Minute)
		if err := s.Requeued(ctx, "k", seen.Updated, at); err != nil {
			t.Fatalf("first Requeued: %v", err)
		}
		if err := s.Requeued(ctx, "k", seen.Updated, at); !errors.Is(err, meta.ErrChanged) {
			t.Fatalf("second Requeued on the same read: %v, want ErrChanged", err)
		}
		after, err := s.Get(ctx, "k")
		if err != nil || !after.Updated.Equal(at) || after.State != meta.StateProcessing {
			t.Fatalf("after Requeued: %+v, %v (read %v)", after, err, seen.Updated)
		}
		if _, err := s.Claim(ctx, "k", src, "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Requeued(ctx, "k", after.Updated, at.Add(time.Minute)); !errors.Is(err, meta.ErrChanged) {
			t.Fatalf("Requeued of a job claimed since it was read: %v, want ErrChanged", err)
		}
		if err := s.Requeued(ctx, "absent", seen.Updated, at); err == nil {
			t.Fatal("Requeued of an absent job: no error")
		}
	})

	// One holder at a time: renewals by the holder, ErrHeld for another until the
	// lease runs out or is given up; of many asking at once, one gets it.
	t.Run("LeaseOneHolder", func(t *testing.T) {
		s := open(t)
		if err := s.Lease(ctx, "rollout-acme", "a", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Lease(ctx, "rollout-acme", "a", time.Minute); err != nil {
			t.Fatalf("renewal: %v", err)
		}
		var held *meta.HeldError
		if err := s.Lease(ctx, "rollout-acme", "b", time.Minute); !errors.As(err, &held) || held.Holder != "a" {
			t.Fatalf("another holder: %v, want a HeldError naming a", err)
		}
		if err := s.EndLease(ctx, "rollout-acme", "b"); err != nil { // not b's: nothing happens
			t.Fatal(err)
		}
		if err := s.Lease(ctx, "rollout-acme", "b", time.Minute); !errors.Is(err, meta.ErrHeld) {
			t.Fatalf("after another's EndLease: %v, want ErrHeld", err)
		}
		if err := s.EndLease(ctx, "rollout-acme", "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Lease(ctx, "rollout-acme", "b", time.Millisecond); err != nil {
			t.Fatalf("after EndLease: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		if err := s.Lease(ctx, "rollout-acme", "c", time.Minute); err != nil {
			t.Fatalf("an expired lease is taken over: %v", err)
		}
		wins, losers := racetest.Winners(8, func(i int) error { return s.Lease(ctx, "race", fmt.Sprint("h", i), time.Minute) })
		if wins != 1 {
			t.Fatalf("%d of 8 holders got one lease: %v", wins, losers)
		}
	})

	t.Run("BusyWhileLeased", func(t *testing.T) {
		s := open(t)
		if _, err := s.Claim(ctx, "k", src, "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, "k", src, "w2", time.Minute); !errors.Is(err, meta.ErrBusy) {
			t.Fatalf("second claimant = %v, want ErrBusy", err)
		}
		c, err := s.Claim(ctx, "k", src, "w1", time.Minute)
		if err != nil || c.Attempts != 2 {
			t.Fatalf("same claimant again = %+v, %v", c, err)
		}
	})

	t.Run("ExpiredClaimTakenOver", func(t *testing.T) {
		s := open(t)
		old, err := s.Claim(ctx, "k", src, "w1", time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		c, err := s.Claim(ctx, "k", src, "w2", time.Minute)
		if err != nil || c.Attempts != 2 {
			t.Fatalf("take-over = %+v, %v", c, err)
		}
		if err := s.Complete(ctx, old, meta.Job{State: meta.StateDone}); !errors.Is(err, meta.ErrLostClaim) {
			t.Fatalf("complete by the old claimant = %v, want ErrLostClaim", err)
		}
		if err := s.Complete(ctx, c, meta.Job{State: meta.StateQuarantined, Reason: "bad"}); err != nil {
			t.Fatal(err)
		}
		j, _ := s.Get(ctx, "k")
		if j.State != meta.StateQuarantined || j.Reason != "bad" {
			t.Fatalf("job = %+v", j)
		}
	})

	t.Run("RenewKeepsAShortLease", func(t *testing.T) {
		s := open(t)
		c, err := s.Claim(ctx, "k", src, "w1", 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 { // a heartbeat: well past the first lease, still held
			time.Sleep(100 * time.Millisecond)
			if err := s.Renew(ctx, c, 300*time.Millisecond); err != nil {
				t.Fatalf("renew: %v", err)
			}
		}
		if _, err := s.Claim(ctx, "k", src, "w2", time.Minute); !errors.Is(err, meta.ErrBusy) {
			t.Fatalf("claim of a renewed job = %v, want ErrBusy", err)
		}
		time.Sleep(400 * time.Millisecond) // the heartbeat stops: the claim frees
		c2, err := s.Claim(ctx, "k", src, "w2", time.Minute)
		if err != nil {
			t.Fatalf("claim after the lease ran out = %v", err)
		}
		if err := s.Renew(ctx, c, time.Minute); !errors.Is(err, meta.ErrLostClaim) {
			t.Fatalf("renew by the old claimant = %v, want ErrLostClaim", err)
		}
		if err := s.Complete(ctx, c2, meta.Job{State: meta.StateDone}); err != nil {
			t.Fatal(err)
		}
		if err := s.Renew(ctx, c2, time.Minute); !errors.Is(err, meta.ErrLostClaim) {
			t.Fatalf("renew of a final job = %v, want ErrLostClaim", err)
		}
	})

	t.Run("ReleaseLetsOthersClaim", func(t *testing.T) {
		s := open(t)
		c, err := s.Claim(ctx, "k", src, "w1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, "k", src, "w2", time.Hour); err != nil {
			t.Fatalf("claim after release: %v", err)
		}
	})

	t.Run("CompleteNeedsFinalState", func(t *testing.T) {
		s := open(t)
		c, _ := s.Claim(ctx, "k", src, "w1", time.Hour)
		if err := s.Complete(ctx, c, meta.Job{State: meta.StateProcessing}); err == nil {
			t.Fatal("Complete accepted a non-final state")
		}
	})

	t.Run("ConcurrentClaimsOneWinner", func(t *testing.T) {
		s := open(t)
		wins, losers := racetest.Winners(8, func(i int) error {
			_, err := s.Claim(ctx, "race", src, fmt.Sprintf("w%d", i), time.Minute)
			return err
		})
		for _, err := range losers {
			if !errors.Is(err, meta.ErrBusy) {
				t.Errorf("loser: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d claimants won, want 1", wins)
		}
	})

	t.Run("ListAndNotFound", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
		}
		for i, k := range []string{"a", "b", "c"} {
			c, err := s.Claim(ctx, k, src, "w", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if i < 2 {
				if err := s.Complete(ctx, c, meta.Job{State: meta.StateDone}); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		all, err := s.List(ctx, meta.Filter{})
		if err != nil || len(all) != 3 || all[0].Key != "c" {
			t.Fatalf("List = %+v, %v (want 3, newest first)", all, err)
		}
		done, _ := s.List(ctx, meta.Filter{State: meta.StateDone, Limit: 1})
		if len(done) != 1 || done[0].Key != "b" {
			t.Fatalf("List(done, 1) = %+v", done)
		}
		oldest, err := s.List(ctx, meta.Filter{Oldest: true, Limit: 2})
		if err != nil || len(oldest) != 2 || oldest[0].Key != "a" || oldest[1].Key != "b" {
			t.Fatalf("List(oldest, 2) = %+v, %v (want a, b)", oldest, err)
		}
	})

	// Pages in key order, whatever the order of updates, for callers that go through
	// every job (backfill) without holding them all.
	t.Run("ListByKeyPages", func(t *testing.T) {
		s := open(t)
		keys := []string{"b/x#2", "a#10", "a#1@v=v2", "a#1", "c"}
		for _, k := range keys {
			if _, err := s.Claim(ctx, k, src, "w", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		f := meta.Filter{ByKey: true, Limit: 2}
		for range 10 {
			page, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 {
				t.Fatalf("List(%+v) returned %d, more than the limit", f, len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, j := range page {
				got = append(got, j.Key)
			}
			f.After = page[len(page)-1].Key
		}
		if want := []string{"a#1", "a#10", "a#1@v=v2", "b/x#2", "c"}; !slices.Equal(got, want) {
			t.Errorf("pages by key = %v, want %v", got, want)
		}
		if _, err := s.List(ctx, meta.Filter{ByKey: true, State: meta.StateDone}); !errors.Is(err, meta.ErrByKeyWithState) {
			t.Errorf("List(by key, done) = %v, want ErrByKeyWithState", err)
		}
	})

	t.Run("BaselineFirstWriterWins", func(t *testing.T) {
		s := open(t)
		if _, err := s.Baseline(ctx, "drift-faces"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("Baseline(missing) = %v, want ErrNotFound", err)
		}
		// Instances freezing at once must all end up with one and the same baseline.
		got := make([][]byte, 6)
		racetest.Winners(len(got), func(i int) error {
			b, err := s.FreezeBaseline(ctx, "drift-faces", []byte(fmt.Sprintf(`{"writer":%d}`, i)))
			if err != nil {
				t.Errorf("FreezeBaseline %d: %v", i, err)
			}
			got[i] = b
			return err
		})
		for i := range got {
			if string(got[i]) != string(got[0]) || len(got[0]) == 0 {
				t.Fatalf("writers disagree on the baseline: %q vs %q", got[i], got[0])
			}
		}
		stored, err := s.Baseline(ctx, "drift-faces")
		if err != nil || string(stored) != string(got[0]) {
			t.Fatalf("Baseline = %q, %v; want %q", stored, err, got[0])
		}
		if again, err := s.FreezeBaseline(ctx, "drift-faces", []byte(`{"late":true}`)); err != nil || string(again) != string(got[0]) {
			t.Fatalf("a late writer replaced the baseline: %q, %v", again, err)
		}
	})

	t.Run("CursorLastWriteWins", func(t *testing.T) {
		s := open(t)
		if _, err := s.Cursor(ctx, "backfill-x"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("Cursor(missing) = %v, want ErrNotFound", err)
		}
		for _, v := range []string{`{"after":"a"}`, `{"after":"b"}`} {
			if err := s.SaveCursor(ctx, "backfill-x", []byte(v)); err != nil {
				t.Fatal(err)
			}
			got, err := s.Cursor(ctx, "backfill-x")
			if err != nil || string(got) != v {
				t.Fatalf("Cursor = %q, %v; want %q", got, err, v)
			}
		}
		if _, err := s.Cursor(ctx, "backfill-y"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("another cursor's name: %v, want ErrNotFound", err)
		}
	})
}
