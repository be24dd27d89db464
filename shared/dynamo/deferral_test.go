package dynamo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// pendingAttrs lists a ledger's pending spend attributes (deferral.go).
func pendingAttrs(t *testing.T, s *Store, k string) []string {
	t.Helper()
	var out []string
	for name := range ledgerItem(t, s, k) {
		if strings.HasPrefix(name, pendingPrefix) {
			out = append(out, name)
		}
	}
	return out
}

// settleOne reserves and settles one request of cost on key k, planned
// from req.
func settleOne(t *testing.T, s *Store, id string, req budget.Request, cost money.Nanos) error {
	t.Helper()
	ctx := context.Background()
	r := &budget.Reservation{ID: id, KeyID: req.KeyID, Charges: budget.Plan(req), Cost: req.Cost, Deadline: req.Now.Add(time.Minute),
		Event: ledger.Event{ID: id, KeyID: req.KeyID, CreatedAt: req.Now.UnixMilli()}}
	if err := s.Reserve(ctx, r); err != nil {
		return err
	}
	ev := &ledger.Event{ID: id, KeyID: req.KeyID, UserID: req.UserID, Status: 200, Cost: cost,
		Usage: ledger.Usage{PromptTokens: 7, CompletionTokens: 3}, LatencyMs: 5, CreatedAt: req.Now.UnixMilli()}
	if err := s.Settle(ctx, r, ev); err != nil {
		t.Fatalf("settle %s: %v", id, err)
	}
	return nil
}

// TestDeferralCloses: spend of an owner without a limit waits on its keys'
// ledgers and is counted by every reader; the first reserve under a limit
// moves all of it to the owner's shards and takes the keys off the list;
// a settle planned without the limit afterwards (a proxy's stale
// configuration) opens it again, and the next limited reserve closes it
// again, counting that spend too.
func TestDeferralCloses(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "deferclose")
	user := budget.UserOwner("u")
	for i, k := range []string{"a", "b", "c"} {
		if err := settleOne(t, s, fmt.Sprint("free", i), budget.Request{KeyID: k, UserID: "u", Cost: 10 * money.Cent, Now: now}, 10*money.Cent); err != nil {
			t.Fatal(err)
		}
		if len(pendingAttrs(t, s, k)) == 0 {
			t.Fatalf("key %s: no pending spend on its ledger", k)
		}
	}
	for _, owner := range []string{"ORG", "USER#u"} {
		keys, err := s.deferredKeys(ctx, owner)
		if err != nil || len(keys) != 3 {
			t.Fatalf("%s lists %v, %v; want the 3 keys", owner, keys, err)
		}
	}
	wantTotals := func(what string, owner budget.Owner, cost money.Nanos, requests int64) {
		t.Helper()
		for _, c := range []budget.Counter{budget.LifetimeSpend(), budget.MonthSpend(now)} {
			tot, err := s.CounterTotals(ctx, owner, c)
			if err != nil || tot.Cost != cost || tot.Committed != cost || tot.Requests != requests || tot.PromptTokens != 7*requests || tot.LatencyMs != 5*requests {
				t.Fatalf("%s: %s %s = %+v, %v; want %d nanos over %d requests", what, owner, counterSK(c), tot, err, cost, requests)
			}
		}
	}
	wantTotals("pending", user, 30*money.Cent, 3)
	wantTotals("pending", budget.OrgOwner(), 30*money.Cent, 3)

	// A limit on the user: 30c of its 50c are spent already.
	limited := func(k string) budget.Request {
		return budget.Request{KeyID: k, UserID: "u", User: &budget.Limits{Lifetime: 50 * money.Cent}, Cost: 10 * money.Cent, Now: now}
	}
	if err := settleOne(t, s, "limited1", limited("a"), 10*money.Cent); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.deferredKeys(ctx, "USER#u"); err != nil || len(keys) != 0 {
		t.Fatalf("after a limited reserve the user lists %v, %v", keys, err)
	}
	for _, k := range []string{"a", "b", "c"} {
		for _, name := range pendingAttrs(t, s, k) {
			if strings.HasPrefix(name, pendingPrefix+"USER#u#") {
				t.Fatalf("key %s still holds %s", k, name)
			}
		}
	}
	// The organisation has no limit: its spend stays where it is.
	if keys, err := s.deferredKeys(ctx, "ORG"); err != nil || len(keys) != 3 {
		t.Fatalf("the organisation lists %v, %v", keys, err)
	}
	wantTotals("closed", user, 40*money.Cent, 4)
	wantTotals("closed", budget.OrgOwner(), 40*money.Cent, 4)

	// A stale plan (no user limit) settles on key b: b is listed again.
	if err := settleOne(t, s, "stale", budget.Request{KeyID: "b", UserID: "u", Cost: 5 * money.Cent, Now: now}, 5*money.Cent); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.deferredKeys(ctx, "USER#u"); err != nil || len(keys) != 1 || keys[0] != "b" {
		t.Fatalf("after a stale settle the user lists %v, %v", keys, err)
	}
	wantTotals("reopened", user, 45*money.Cent, 5)
	// 45c spent: a 10c request no longer fits under 50c; a 5c one does.
	err := settleOne(t, s, "limited2", limited("c"), 10*money.Cent)
	if le, ok := err.(*budget.LimitError); !ok || le.Charge.Scope != "user lifetime spend" {
		t.Fatalf("10c with 45c of 50c spent: %v, want the user's lifetime limit", err)
	}
	req := limited("c")
	req.Cost = 5 * money.Cent
	if err := settleOne(t, s, "limited3", req, 5*money.Cent); err != nil {
		t.Fatalf("5c with 45c of 50c spent: %v", err)
	}
	wantTotals("full", user, 50*money.Cent, 6)
	wantTotals("full", budget.OrgOwner(), 50*money.Cent, 6)
}

// TestDeferralDrainsEndedMonths: the sweep moves the pending spend of a
// month that ended to the owner's shards, the month's and the lifetime's
// totals stay what they were, and the current month's stays pending.
func TestDeferralDrainsEndedMonths(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	start := testclock.MonthStart(testclock.Now(t), 0)
	before, after := start.Add(-10*time.Minute), start.Add(10*time.Minute)
	s := newStore(t, endpoint, "defermonths")
	if err := settleOne(t, s, "old", budget.Request{KeyID: "k", Cost: money.Cent, Now: before}, money.Cent); err != nil {
		t.Fatal(err)
	}
	if err := settleOne(t, s, "new", budget.Request{KeyID: "k", Cost: 2 * money.Cent, Now: after}, 2*money.Cent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StaleReservations(ctx, after.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, _, oldMonth := budget.Window(budget.Month, before)
	_, _, newMonth := budget.Window(budget.Month, after)
	for _, name := range pendingAttrs(t, s, "k") {
		if !strings.Contains(name, "#"+newMonth+"#") {
			t.Errorf("%s is still on the ledger after its month ended", name)
		}
	}
	if len(pendingAttrs(t, s, "k")) == 0 {
		t.Errorf("the current month %s left the ledger too", newMonth)
	}
	if n := getN(ledgerItem(t, s, "k"), attrDrains); n != 1 {
		t.Errorf("dseq %d, want 1", n)
	}
	for _, tc := range []struct {
		c    budget.Counter
		want money.Nanos
	}{{budget.MonthSpend(before), money.Cent}, {budget.MonthSpend(after), 2 * money.Cent}, {budget.LifetimeSpend(), 3 * money.Cent}} {
		tot, err := s.CounterTotals(ctx, budget.OrgOwner(), tc.c)
		if err != nil || tot.Cost != tc.want || tot.Committed != tc.want {
			t.Errorf("organisation %s: %+v, %v; want %d", counterSK(tc.c), tot, err, tc.want)
		}
	}
	if oldMonth == newMonth {
		t.Fatalf("fixture: %s and %s are one month", before, after)
	}
}

// TestOwnerTotalsDuringDrains: readers that run while drains move the
// spend from the ledgers to the shards count each amount once: every
// reading is the same total.
func TestOwnerTotalsDuringDrains(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "deferread")
	const keys = 24
	for i := range keys {
		if err := settleOne(t, s, fmt.Sprint("r", i), budget.Request{KeyID: fmt.Sprintf("k%02d", i), Cost: money.Cent, Now: now}, money.Cent); err != nil {
			t.Fatal(err)
		}
	}
	want := keys * money.Cent
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var readings []money.Nanos
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				tot, err := s.CounterTotals(ctx, budget.OrgOwner(), budget.LifetimeSpend())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				readings = append(readings, tot.Cost)
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(readings)
	}
	for i := range keys {
		if err := s.drain(ctx, fmt.Sprintf("k%02d", i), "ORG", "", i%2 == 0); err != nil {
			t.Fatal(err)
		}
		// Let readings that overlapped this drain finish before the next.
		for n := count(); count() < n+2; {
			time.Sleep(time.Millisecond)
		}
	}
	close(done)
	wg.Wait()
	if len(readings) < 2*keys {
		t.Fatalf("only %d readings", len(readings))
	}
	for _, r := range readings {
		if r != want {
			t.Fatalf("a reading of %d among %d readings, want %d each", r, len(readings), want)
		}
	}
	if tot, err := s.CounterTotals(ctx, budget.OrgOwner(), budget.LifetimeSpend()); err != nil || tot.Cost != want {
		t.Fatalf("after the drains: %+v, %v", tot, err)
	}
}
