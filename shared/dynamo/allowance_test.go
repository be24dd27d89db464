package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
	"github.com/stipend/stipend/shared/user"
)

// orgRace runs n requests over keys at once, as a proxy plans them under
// the organisation's settings o (its version checked), each reserving
// worst and settling actual; it returns how many were admitted and how
// many refused by each scope.
func orgRace(t *testing.T, s *Store, name string, n int, keys []string, o *user.Org, now time.Time, worst, actual money.Nanos) (int64, map[string]int) {
	t.Helper()
	return raceReserves(t, s, n, keys, func(i int, keyID string) (*budget.Reservation, budget.Request) {
		return orgPlan(fmt.Sprintf("%s-%04d", name, i), keyID, o, now, worst)
	}, actual)
}

// orgPlan is the reservation of worst for keyID as planned under o.
func orgPlan(id, keyID string, o *user.Org, now time.Time, worst money.Nanos) (*budget.Reservation, budget.Request) {
	req := budget.Request{KeyID: keyID, Cost: worst, Now: now,
		Org: &budget.Limits{Lifetime: o.CostLimitLifetime, PerMonth: o.CostLimitPerMonth}}
	if strings.HasPrefix(keyID, "capped") {
		// A provider's ceiling too: a transaction on the counter items.
		req.Provider = &budget.ProviderCeiling{ID: "p", RPM: 1_000_000}
	}
	return &budget.Reservation{ID: id, KeyID: keyID, Charges: budget.Plan(req), Cost: worst, Deadline: time.Now().Add(time.Minute),
		Checks: []budget.Check{{Kind: budget.CheckOrg, Version: o.Version}},
		Event:  ledger.Event{ID: id, KeyID: keyID, CreatedAt: now.UnixMilli()}}, req
}

// orgReserve reserves worst for keyID as planned under o.
func orgReserve(s *Store, id, keyID string, o *user.Org, now time.Time, worst money.Nanos) (*budget.Reservation, error) {
	r, _ := orgPlan(id, keyID, o, now, worst)
	return r, s.Reserve(context.Background(), r)
}

// mustReserve is orgReserve, failing the test on any error.
func mustReserve(t *testing.T, s *Store, id, keyID string, o *user.Org, now time.Time, worst money.Nanos) *budget.Reservation {
	t.Helper()
	r, err := orgReserve(s, id, keyID, o, now, worst)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// orgStore is a new store on table whose organisation has the settings o
// (stored, o.Version set) and whose grants are slices of 1/share of a
// limit (0: allowanceShare).
func orgStore(t *testing.T, endpoint, table string, share int64, o *user.Org) *Store {
	t.Helper()
	s := newStore(t, endpoint, table)
	s.share = share
	if err := s.PutOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return s
}

// settleAt settles r of key at cost.
func settleAt(t *testing.T, s *Store, r *budget.Reservation, key string, now time.Time, cost money.Nanos) {
	t.Helper()
	if err := s.Settle(context.Background(), r, &ledger.Event{ID: r.ID, KeyID: key, Status: 200, Cost: cost, CreatedAt: now.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
}

// unspent is what every key holds of the organisation's counter c.
func unspent(t *testing.T, s *Store, c budget.Counter) int64 {
	t.Helper()
	a, err := s.readAllowances(context.Background(), []budget.Counter{c})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := s.heldAllowances(context.Background(), counterSK(c), a.counters[0].holders)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestOrgAllowances: under an organisation limit, keys reserve from
// allowances of it held on their ledgers, and still: admissions are exact
// (a refusal comes only once every allowance is back in the pool), the
// totals count each request once, a lowered limit applies at the next
// request, and a key past maxHolders reserves on the counter items.
func TestOrgAllowances(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	month := budget.MonthSpend(now)
	keys := make([]string, 32)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}

	t.Run("exact across 32 keys", func(t *testing.T) {
		s := newStore(t, endpoint, "allowexact")
		// 30c spent while the organisation had no limit: on its shards.
		if admitted, _ := race(t, s, 3, keys, func(k string) budget.Request {
			return budget.Request{KeyID: k, Cost: 10 * money.Cent, Now: now}
		}, 10*money.Cent); admitted != 3 {
			t.Fatalf("admitted %d of 3", admitted)
		}
		// $1.50 a month in slices of 2c, requests of 1c.
		s.share = 75
		o := &user.Org{CostLimitPerMonth: 150 * money.Cent, UpdatedAt: now.Unix()}
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		// A request on each key: most keys hold 1c of allowance after.
		admitted, limited := orgRace(t, s, "exact", 32, keys, o, now, money.Cent, money.Cent)
		if admitted != 32 || len(limited) != 0 {
			t.Fatalf("32 requests of 1c, $1.20 left: admitted %d, limited %v", admitted, limited)
		}
		if held := unspent(t, s, month); held < 20*int64(money.Cent) {
			t.Fatalf("the keys hold %d after a request each; want allowances on most of them", held)
		}
		// Two keys use up the rest: what the others hold comes back first.
		admitted, limited = orgRace(t, s, "exact2", 100, keys[:2], o, now, money.Cent, money.Cent)
		if admitted != 88 || limited["organisation monthly spend"] != 12 {
			t.Fatalf("88c left, 100 requests of 1c on 2 keys: admitted %d, limited %v", admitted, limited)
		}
		tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(month))
		if err != nil {
			t.Fatal(err)
		}
		if tot.Cost != 150*money.Cent || tot.Requests != 123 || tot.Committed != 150*money.Cent {
			t.Errorf("month %+v; want $1.50 over 123 requests, all committed", tot)
		}
		if held := unspent(t, s, month); held != 0 {
			t.Errorf("%d nanodollars still held after the refusals", held)
		}
	})

	t.Run("a key that reserves on the counter item", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 80 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowmixed", 40, o) // slices of 2c
		if admitted, _ := orgRace(t, s, "mixed", 32, keys, o, now, money.Cent, money.Cent); admitted != 32 {
			t.Fatalf("admitted %d of 32", admitted)
		}
		// A key with a provider's ceiling as well reserves on the counter
		// items; what the 32 keys hold comes back before it is refused.
		admitted, limited := orgRace(t, s, "mixed2", 60, []string{"capped"}, o, now, money.Cent, money.Cent)
		if admitted != 48 || limited["organisation monthly spend"] != 12 {
			t.Fatalf("48c left, 60 requests of 1c: admitted %d, limited %v", admitted, limited)
		}
	})

	t.Run("lifetime and month both limited", func(t *testing.T) {
		o := &user.Org{CostLimitLifetime: money.Dollar, CostLimitPerMonth: 2 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowboth", 32, o)
		admitted, limited := orgRace(t, s, "both", 150, keys, o, now, money.Cent, money.Cent)
		if admitted != 100 || limited["organisation lifetime spend"] != 50 {
			t.Fatalf("$1 for life, $2 a month, 150 requests of 1c: admitted %d, limited %v", admitted, limited)
		}
		for _, c := range []budget.Counter{budget.LifetimeSpend(), month} {
			tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(c))
			if err != nil || tot.Cost != money.Dollar || tot.Requests != 100 {
				t.Errorf("%s: %+v, %v", counterSK(c), tot, err)
			}
		}
		if tot, _ := s.OwnerTotals(ctx, pkOrg, counterSK(budget.LifetimeSpend())); tot.Committed != money.Dollar {
			t.Errorf("lifetime committed %v after the refusals, want $1", tot.Committed)
		}
	})

	t.Run("actual below the reservation", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 50 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowrelease", 32, o)
		// Each request may cost 1c and costs 0.4c: 50 fit at once, more
		// as settled ones give back what they did not spend.
		admitted, limited := orgRace(t, s, "release", 150, keys, o, now, money.Cent, 4*money.Cent/10)
		tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(month))
		if err != nil {
			t.Fatal(err)
		}
		held := unspent(t, s, month)
		if admitted < 50 || tot.Requests != admitted || tot.Cost != money.Nanos(admitted)*4*money.Cent/10 ||
			tot.Committed != tot.Cost || tot.Cost > o.CostLimitPerMonth {
			t.Errorf("admitted %d (limited %v); month %+v with %d held: want committed = cost <= 50c", admitted, limited, tot, held)
		}
	})

	t.Run("a lowered limit applies at the next request", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowrevoke", 0, o)
		old := *o
		r := mustReserve(t, s, "before", "k", o, now, money.Cent)
		settleAt(t, s, r, "k", now, money.Cent)
		if held := unspent(t, s, month); held < 2*int64(money.Cent) {
			t.Fatalf("the key holds %d after a request; want an allowance of 2c or more", held)
		}
		// 1c spent; the limit becomes 2c: one more request of 1c fits,
		// though the key held more.
		o.CostLimitPerMonth = 2 * money.Cent
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		if held := unspent(t, s, month); held != 0 {
			t.Errorf("%d still held after the change", held)
		}
		if _, err := orgReserve(s, "stale", "k", &old, now, money.Cent); !errors.Is(err, budget.ErrStale) {
			t.Errorf("a reserve planned from the old settings: %v, want ErrStale", err)
		}
		var admitted int
		for i := range 4 {
			_, err := orgReserve(s, fmt.Sprintf("after-%d", i), "k", o, now, money.Cent)
			var le *budget.LimitError
			switch {
			case err == nil:
				admitted++
			case !errors.As(err, &le):
				t.Fatal(err)
			}
		}
		if admitted != 1 {
			t.Errorf("admitted %d of 4 requests of 1c with 1c left", admitted)
		}
	})

	t.Run("past maxHolders, on the counter items", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 1000 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowcap", 0, o)
		var many []string
		for i := range maxHolders + 2 {
			many = append(many, fmt.Sprintf("h%03d", i))
		}
		admitted, limited := orgRace(t, s, "cap", len(many), many, o, now, money.Cent, money.Cent)
		if admitted != int64(len(many)) {
			t.Fatalf("admitted %d of %d (limited %v)", admitted, len(many), limited)
		}
		item := rawItem(t, s, pkOrg, counterSK(month))
		holders := getSS(item, attrHolders)
		if len(holders) != maxHolders {
			t.Errorf("%d holders, want %d", len(holders), maxHolders)
		}
		// The headers read the counter item: one read unit (4 KB).
		if size := ddb.ItemSize(item); size >= 4096 {
			t.Errorf("the counter item with %d holders is %d bytes: more than one read unit", len(holders), size)
		}
		tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(month))
		if err != nil || tot.Requests != int64(len(many)) || tot.Cost != money.Nanos(len(many))*money.Cent {
			t.Errorf("month %+v, %v", tot, err)
		}
	})

	t.Run("settings changed during a reclaim", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 100 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowmarks", 10, o)
		r := mustReserve(t, s, "a1", "k1", o, now, money.Cent)
		settleAt(t, s, r, "k1", now, money.Cent)
		// A reserve's reclaim begins (it was refused at grantExact).
		cs := []budget.Counter{month}
		planned := o.Version
		if err := s.setMarks(ctx, cs, attrDrained, o.Version); err != nil {
			t.Fatal(err)
		}
		a, err := s.readAllowances(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		// The admin changes the settings meanwhile.
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		r, err = orgReserve(s, "a2", "k2", o, now, money.Cent)
		if err != nil {
			t.Fatal(err)
		}
		settleAt(t, s, r, "k2", now, money.Cent)
		// The reclaim completes.
		if err := s.reclaimHolders(ctx, a, drainedMark(planned)); err != nil {
			t.Fatal(err)
		}
		if err := s.setMarks(ctx, cs, attrReclaimed, planned); err != nil {
			t.Fatal(err)
		}
		item := rawItem(t, s, pkOrg, counterSK(month))
		t.Logf("marks: drained=%d reclaimed=%d; held=%d", getN(item, attrDrained), getN(item, attrReclaimed), unspent(t, s, month))
		admitted := 0
		for i := range 120 {
			r, err := orgReserve(s, fmt.Sprintf("a3-%d", i), "k3", o, now, money.Cent)
			var le *budget.LimitError
			if errors.As(err, &le) {
				t.Logf("refused after %d, with %d held elsewhere", admitted, unspent(t, s, month))
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "k3", now, money.Cent)
			admitted++
		}
		if admitted != 98 {
			t.Errorf("98c left: admitted %d", admitted)
		}
	})

	t.Run("both counters reclaimed for a key on the counter items", func(t *testing.T) {
		o := &user.Org{CostLimitLifetime: 40 * money.Cent, CostLimitPerMonth: 40 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowbothcap", 20, o) // slices of 2c
		for i := range 16 {
			k := fmt.Sprintf("k%02d", i)
			r := mustReserve(t, s, "b-"+k, k, o, now, money.Cent)
			settleAt(t, s, r, k, now, money.Cent)
		}
		admitted, refusedEarly := 0, 0
		for i := range 40 {
			r, err := orgReserve(s, fmt.Sprintf("b2-%d", i), "capped", o, now, money.Cent)
			var le *budget.LimitError
			if errors.As(err, &le) {
				held := unspent(t, s, month) + unspent(t, s, budget.LifetimeSpend())
				t.Logf("request %d refused (%s), %d held", i, le.Charge.Scope, held)
				if held > 0 {
					refusedEarly++
					continue
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "capped", now, money.Cent)
			admitted++
		}
		if admitted != 24 || refusedEarly > 0 {
			t.Errorf("24c left: admitted %d, refused with allowances held %d", admitted, refusedEarly)
		}
	})

	t.Run("a plan from older settings does not draw", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "allowstale", 0, o)
		old := *o
		o.CostLimitLifetime = money.Cent
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		r := mustReserve(t, s, "c1", "k", o, now, money.Cent)
		settleAt(t, s, r, "k", now, money.Cent)
		r, err := orgReserve(s, "c2", "k", &old, now, money.Cent)
		if !errors.Is(err, budget.ErrStale) {
			t.Errorf("a plan from the older settings: %v, want ErrStale", err)
		}
		if err == nil {
			settleAt(t, s, r, "k", now, money.Cent)
		}
		tot, _ := s.OwnerTotals(ctx, pkOrg, counterSK(budget.LifetimeSpend()))
		if tot.Cost > money.Cent {
			t.Errorf("lifetime spend %v over its 1c limit", tot.Cost)
		}
	})
}
