package dynamo

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
)

// TestStrikes: concurrent strikes are each counted once with their event,
// concurrent suspensions suspend once, an admin's write of the key keeps
// the strikes, and a reset forgets them.
func TestStrikes(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "strikes")
	k := &apikey.Key{ID: apikey.NewID(), Name: "k", Hash: "h", Moderation: true, CreatedAt: 1}
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Strikes(ctx, k.ID); err != nil || st.Count != 0 || len(st.EventIDs) != 0 {
		t.Fatalf("no strikes yet: %+v, %v", st, err)
	}
	const n = 12
	var wg sync.WaitGroup
	var suspended atomic.Int64
	for i := range n {
		wg.Go(func() {
			st, err := s.Strike(ctx, k.ID, fmt.Sprintf("ev%02d", i))
			if err != nil {
				t.Error(err)
				return
			}
			if st.Count >= 3 {
				ok, err := s.Suspend(ctx, k.ID, time.Unix(100, 0), "too many", st.EventIDs)
				if err != nil {
					t.Error(err)
				}
				if ok {
					suspended.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st, err := s.Strikes(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	ids := slices.Sorted(slices.Values(st.EventIDs))
	if st.Count != n || len(ids) != n || len(slices.Compact(slices.Clone(ids))) != n {
		t.Fatalf("strikes %+v, want %d distinct", st, n)
	}
	got, err := s.GetKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if suspended.Load() != 1 || !got.Suspended || got.SuspendedAt != 100 || got.Version != 2 || len(got.SuspendedEventIDs) < 3 {
		t.Fatalf("%d suspensions; key %+v", suspended.Load(), got)
	}
	// An admin's write of the key leaves the strikes alone.
	got.Name = "renamed"
	if err := s.UpdateKey(ctx, got); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Strikes(ctx, k.ID); st.Count != n {
		t.Fatalf("after a key update: %+v", st)
	}
	if err := s.ResetStrikes(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Strikes(ctx, k.ID); st.Count != 0 || len(st.EventIDs) != 0 {
		t.Fatalf("after a reset: %+v", st)
	}
	if st, err := s.Strike(ctx, k.ID, "again"); err != nil || st.Count != 1 || !slices.Equal(st.EventIDs, []string{"again"}) {
		t.Fatalf("a strike after the reset: %+v, %v", st, err)
	}
}
