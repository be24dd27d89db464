package dynamo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// TestOrgLimitAcross32Keys: spend counted while the organisation had no
// limit (on shards, from every key) counts against a limit set later, and
// 32 keys racing for what is left are admitted exactly up to it.
func TestOrgLimitAcross32Keys(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "org32")
	var keys []string
	for i := range 32 {
		keys = append(keys, fmt.Sprintf("k%02d", i))
	}
	admitted, limited := race(t, s, 64, keys, func(k string) budget.Request {
		return budget.Request{KeyID: k, Cost: money.Cent, Now: now}
	}, money.Cent)
	if admitted != 64 || len(limited) != 0 {
		t.Fatalf("without a limit: admitted %d, limited %v", admitted, limited)
	}
	org := budget.Limits{PerMonth: money.Dollar}
	admitted, limited = race(t, s, 200, keys, func(k string) budget.Request {
		return budget.Request{KeyID: k, Org: &org, Cost: money.Cent, Now: now}
	}, money.Cent)
	month, err := s.OwnerTotals(ctx, "ORG", budget.MonthCounter(now))
	if err != nil {
		t.Fatal(err)
	}
	if admitted != 36 || limited["organisation monthly spend"] != 164 || month.Cost != money.Dollar || month.Committed != money.Dollar || month.Requests != 100 {
		t.Fatalf("$1 a month, 64c spent before, 200 requests of 1c over 32 keys: admitted %d, limited %v, month %+v", admitted, limited, month)
	}
	// The lifetime had no limit: deferred, counted on shards, by the event's
	// transaction before the limit and by the settle's after it: once each.
	life, err := s.CounterTotals(ctx, budget.OrgOwner(), budget.LifetimeSpend())
	if err != nil || life.Cost != money.Dollar || life.Committed != money.Dollar || life.Requests != 100 {
		t.Fatalf("lifetime %+v, %v; want $1 over 100 requests", life, err)
	}
}

// TestTransactionReserveCounts: a reserve in a transaction returns
// nothing, so when it reads the limited counters' shards first it reads
// every limited counter of the reservation in the same round trip, and
// reports them with its own amounts as what it counted (the headers need
// no read of their own); with nothing sharded to read it learns nothing.
func TestTransactionReserveCounts(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "txcounts")
	// 30c spent without limits: the organisation's on shards.
	if admitted, _ := race(t, s, 3, []string{"k"}, func(k string) budget.Request {
		return budget.Request{KeyID: k, Cost: 10 * money.Cent, Now: now}
	}, 10*money.Cent); admitted != 3 {
		t.Fatalf("admitted %d of 3", admitted)
	}
	reserve := func(id string, req budget.Request) *budget.Reservation {
		t.Helper()
		r := &budget.Reservation{ID: id, KeyID: "k", Charges: budget.Plan(req), Cost: req.Cost, Deadline: now.Add(time.Minute),
			Event: ledger.Event{ID: id, KeyID: "k", CreatedAt: now.UnixMilli()}}
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := reserve("org", budget.Request{KeyID: "k", Key: budget.Limits{Lifetime: money.Dollar, Rate: 100, RateUnit: budget.Minute},
		Org: &budget.Limits{PerMonth: money.Dollar}, Cost: 5 * money.Cent, Now: now})
	if len(r.Counted) != len(r.Charges) {
		t.Fatalf("counted %v for %d charges", r.Counted, len(r.Charges))
	}
	for i, c := range r.Charges {
		want := int64(-1)
		switch {
		case c.Limit == 0:
		case c.Kind == budget.Requests:
			want = 1
		default:
			want = int64(35 * money.Cent) // 30c settled before, 5c reserved now
		}
		if r.Counted[i] != want {
			t.Errorf("%s %s counted %d, want %d", c.Owner, c.Counter, r.Counted[i], want)
		}
	}
	// A user's rate limit alone: a transaction with no shards to read.
	r = reserve("user", budget.Request{KeyID: "k", UserID: "u", User: &budget.Limits{Rate: 100, RateUnit: budget.Minute}, Cost: money.Cent, Now: now})
	if r.Counted != nil {
		t.Errorf("counted %v, want nil (nothing read)", r.Counted)
	}
}
