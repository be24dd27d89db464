package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// TestFundedSettle: a request whose organisation charges an allowance paid
// for settles on its ledger alone, and still: what it did not spend goes
// back to the allowance only while that is one (not after the settings
// changed, not after the limit was reached), the organisation's totals
// count it once, and a limit set later on the other counter sees its cost.
func TestFundedSettle(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	month := budget.MonthSpend(now)
	life := budget.LifetimeSpend()
	orgTotals := func(t *testing.T, s *Store, c budget.Counter) (cost, committed money.Nanos, requests int64) {
		t.Helper()
		tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(c))
		if err != nil {
			t.Fatal(err)
		}
		return tot.Cost, tot.Committed, tot.Requests
	}

	t.Run("on the ledger alone", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "fundledger", 100, o) // slices of 10c
		r := mustReserve(t, s, "f1", "k", o, now, money.Cent)
		if r.Funded != o.Version {
			t.Fatalf("Funded %d, want the version %d", r.Funded, o.Version)
		}
		settleAt(t, s, r, "k", now, 4*money.Cent/10)
		counter := rawItem(t, s, pkOrg, counterSK(month))
		led := rawItem(t, s, keyPK("k"), skUsage)
		pending := pendingAttr(fundedOwner(false, true), month.Window, "c")
		switch {
		case getN(counter, attrCommitted) != int64(10*money.Cent) || getN(counter, "costNanos") != 0:
			t.Errorf("counter v %d, cost %d: want the slice granted and no figures", getN(counter, attrCommitted), getN(counter, "costNanos"))
		case getN(led, allowAttr(month)) != int64(96*money.Cent/10):
			t.Errorf("allowance %d, want 9.6c: 9c left of the slice and 0.6c unspent", getN(led, allowAttr(month)))
		case getN(led, pending) != int64(4*money.Cent/10):
			t.Errorf("pending %s = %d, want 0.4c", pending, getN(led, pending))
		}
		check := func(when string) {
			t.Helper()
			if cost, committed, n := orgTotals(t, s, month); cost != 4*money.Cent/10 || committed != cost || n != 1 {
				t.Errorf("%s: month cost %v, committed %v, %d requests; want 0.4c, 0.4c (not what the key holds), 1", when, cost, committed, n)
			}
			if cost, committed, n := orgTotals(t, s, life); cost != 4*money.Cent/10 || committed != 4*money.Cent/10 || n != 1 {
				t.Errorf("%s: lifetime cost %v, committed %v, %d requests; want 0.4c, 0.4c, 1", when, cost, committed, n)
			}
		}
		check("pending")
		if err := s.drain(ctx, "k", fundedOwner(false, true), "", true); err != nil {
			t.Fatal(err)
		}
		check("drained")
	})

	t.Run("a key of a user without a limit", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "funduser", 100, o)
		for i := range 3 {
			r, _ := orgPlan(fmt.Sprintf("u%d", i), "k", o, now, money.Cent)
			r.Charges = budget.Plan(budget.Request{KeyID: "k", UserID: "u", Cost: money.Cent, Now: now,
				Org: &budget.Limits{PerMonth: o.CostLimitPerMonth}})
			if err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "k", now, 4*money.Cent/10)
		}
		if got := rawItem(t, s, pkOrg, counterSK(month)); getN(got, "requests") != 0 {
			t.Errorf("the counter item counted %d requests: the settles were transactions", getN(got, "requests"))
		}
		for _, owner := range []string{userPK("u"), pkOrg} {
			for _, c := range []budget.Counter{life, month} {
				tot, err := s.OwnerTotals(ctx, owner, counterSK(c))
				if err != nil || tot.Cost != 12*money.Cent/10 || tot.Committed != tot.Cost || tot.Requests != 3 {
					t.Errorf("%s %s: %+v, %v; want 1.2c committed over 3 requests", owner, counterSK(c), tot, err)
				}
			}
		}
	})

	t.Run("a release after the settings changed", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "fundversion", 100, o)
		r1 := mustReserve(t, s, "v1", "k", o, now, money.Cent)
		if err := s.PutOrg(ctx, o); err != nil { // same limits, a new version
			t.Fatal(err)
		}
		r2 := mustReserve(t, s, "v2", "k", o, now, money.Cent)
		settleAt(t, s, r1, "k", now, 4*money.Cent/10)
		settleAt(t, s, r2, "k", now, money.Cent)
		// The new grant left 9c; r1's 0.6c went back to the pool, not to it.
		if held := unspent(t, s, month); held != int64(9*money.Cent) {
			t.Errorf("held %d, want 9c", held)
		}
		cost, committed, _ := orgTotals(t, s, month)
		if cost != 14*money.Cent/10 || committed != cost {
			t.Errorf("month cost %v, committed %v: want 1.4c and 1.4c", cost, committed)
		}
	})

	t.Run("releases after the limit was reached", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 30 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "funddrained", 30, o) // slices of 1c
		keys := make([]string, 16)
		for i := range keys {
			keys[i] = fmt.Sprintf("k%02d", i)
		}
		// Requests may cost 1c and cost 0.4c: the limit is reached while
		// many are in flight, and they give back what they did not spend.
		admitted, limited := orgRace(t, s, "drained", 200, keys, o, now, money.Cent, 4*money.Cent/10)
		t.Logf("admitted %d, limited %v, held %d", admitted, limited, unspent(t, s, month))
		// Then one key goes on alone until refused: the refusal must be
		// exact, with nothing held elsewhere.
		for i := range 200 {
			r, err := orgReserve(s, fmt.Sprintf("late-%d", i), "late", o, now, money.Cent)
			var le *budget.LimitError
			if errors.As(err, &le) {
				cost, _, _ := orgTotals(t, s, month)
				if held := unspent(t, s, month); held != 0 || cost+money.Cent <= o.CostLimitPerMonth {
					t.Errorf("refused after %d more with %v spent of %v and %d held", i, cost, o.CostLimitPerMonth, held)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "late", now, 4*money.Cent/10)
		}
		t.Fatal("never refused")
	})

	t.Run("a release in flight across the reclaim", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "fundflight", 2, o) // slices of 5c
		inFlight := mustReserve(t, s, "a", "ka", o, now, money.Cent)
		// The other key takes the rest: its sixth request finds the pool
		// empty, and the reclaim takes back what ka holds (4c).
		for i := range 9 {
			r, err := orgReserve(s, fmt.Sprintf("b%d", i), "kb", o, now, money.Cent)
			if err != nil {
				t.Fatalf("request %d of kb: %v", i, err)
			}
			settleAt(t, s, r, "kb", now, money.Cent)
		}
		if _, err := orgReserve(s, "b-over", "kb", o, now, money.Cent); err == nil {
			t.Fatal("10c committed, and 1c more admitted")
		}
		// ka's request costs 0.4c: 0.6c goes back to the pool, where kb
		// finds it, not to ka's allowance.
		settleAt(t, s, inFlight, "ka", now, 4*money.Cent/10)
		if _, err := orgReserve(s, "b-half", "kb", o, now, money.Cent/2); err != nil {
			t.Errorf("0.6c left, 0.5c refused: %v (held %d)", err, unspent(t, s, month))
		}
	})

	t.Run("the sweep: a stale reservation, then the month's end", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "fundsweep", 100, o) // slices of 10c
		r := mustReserve(t, s, "m1", "k", o, now, money.Cent)
		settleAt(t, s, r, "k", now, 4*money.Cent/10)
		// A request whose invocation died: the sweep settles it at 1c.
		dead := mustReserve(t, s, "m2", "k", o, now, money.Cent)
		stale, err := s.StaleReservations(ctx, dead.Deadline.Add(time.Second))
		if err != nil || len(stale) != 1 || stale[0].Funded != o.Version {
			t.Fatalf("stale %+v, %v; want m2, funded", stale, err)
		}
		if err := s.SettleStale(ctx, stale[0]); err != nil {
			t.Fatal(err)
		}
		if cost, committed, n := orgTotals(t, s, month); cost != 14*money.Cent/10 || committed != cost || n != 2 {
			t.Errorf("month cost %v, committed %v, %d requests; want 1.4c, 1.4c, 2", cost, committed, n)
		}
		// After the month: its figures reach the shards, and what the
		// allowance still held (8.6c) goes back to the month's counter.
		_, end, _ := budget.Window(budget.Month, now)
		if _, err := s.StaleReservations(ctx, end.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		led := rawItem(t, s, keyPK("k"), skUsage)
		for _, name := range []string{allowAttr(month), drainedAttr(month)} {
			if _, ok := led[name]; ok {
				t.Errorf("%s is still on the ledger after its month ended", name)
			}
		}
		if pending := pendingOn(led, fundedOwner(false, true), "").attrs; len(pending) > 0 {
			t.Errorf("pending %v is still on the ledger after its month ended", pending)
		}
		if cost, committed, n := orgTotals(t, s, month); cost != 14*money.Cent/10 || committed != cost || n != 2 {
			t.Errorf("month cost %v, committed %v, %d requests; want 1.4c, committed = cost, 2", cost, committed, n)
		}
		if cost, committed, n := orgTotals(t, s, life); cost != 14*money.Cent/10 || committed != cost || n != 2 {
			t.Errorf("lifetime cost %v, committed %v, %d requests; want 1.4c, committed = cost, 2", cost, committed, n)
		}
	})

	t.Run("a lifetime limit set later sees the funded months", func(t *testing.T) {
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "fundlater", 100, o)
		for i := range 3 {
			r := mustReserve(t, s, fmt.Sprintf("l%d", i), fmt.Sprintf("k%d", i), o, now, money.Cent)
			settleAt(t, s, r, fmt.Sprintf("k%d", i), now, 3*money.Cent/10)
		}
		// 0.9c spent; a lifetime limit of 1.5c leaves room for 0.6c.
		o.CostLimitLifetime = 15 * money.Cent / 10
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		if _, err := orgReserve(s, "big", "k0", o, now, 7*money.Cent/10); err == nil {
			t.Error("0.7c admitted with 0.6c left of the lifetime")
		}
		if _, err := orgReserve(s, "fits", "k0", o, now, 6*money.Cent/10); err != nil {
			t.Errorf("0.6c with 0.6c left: %v", err)
		}
	})
}

// TestFundedLimitsLater: spend that a month's allowance paid for and that
// waits on a ledger counts against a lifetime limit set later, even when
// its request settles after the change (a month's boundary) or lands while
// PutOrg is still draining; and a reclaim is not starved by a busy key
// whose settles give back to its allowance; a revocation that failed
// halfway does not stop the key; a month's reclaim leaves the lifetime's
// allowances alone. (Found by two reviews: each case failed on b8f793c or
// e150f71.)
func TestFundedLimitsLater(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	lifetime := func(t *testing.T, s *Store) money.Nanos {
		t.Helper()
		tot, err := s.OwnerTotals(ctx, pkOrg, counterSK(budget.LifetimeSpend()))
		if err != nil {
			t.Fatal(err)
		}
		return tot.Committed
	}
	t.Run("a month's boundary", func(t *testing.T) {
		start, _, _ := budget.Window(budget.Month, testclock.Now(t))
		before, after := start.Add(-10*time.Minute), start.Add(time.Minute)
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: before.Unix()}
		s := orgStore(t, endpoint, "laterboundary", 100, o)
		r, err := orgReserve(s, "old", "k", o, before, 50*money.Cent)
		if err != nil || r.Funded == 0 {
			t.Fatalf("reserve: %v, funded %d", err, r.Funded)
		}
		o.CostLimitLifetime = 60 * money.Cent
		o.UpdatedAt = after.Unix()
		if err := s.PutOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		settleAt(t, s, r, "k", before, 50*money.Cent)
		if _, err := orgReserve(s, "new", "x", o, after, 20*money.Cent); err == nil {
			t.Errorf("20c admitted with 10c left of a 60c lifetime limit; lifetime committed now %v", lifetime(t, s))
		}
	})
	t.Run("while PutOrg revokes", func(t *testing.T) {
		now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "laterputorg", 100, o)
		for k := range 5 {
			for i := range 10 {
				key := fmt.Sprintf("k%d", k)
				r := mustReserve(t, s, fmt.Sprintf("%s-%d", key, i), key, o, now, money.Cent)
				settleAt(t, s, r, key, now, money.Cent)
			}
		}
		// The admin's PutOrg stops after the settings are stored, as it
		// reads the holders of the allowances it revokes.
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		pause := func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
			if g, ok := in.(*ddb.GetItemInput); ok && getS(g.Key, attrPK) == pkOrg && getS(g.Key, attrSK) == skUsage {
				once.Do(func() { close(entered); <-release })
			}
			return next(ctx)
		}
		admin := New(s.db, s.table, 0, WithMiddleware(pause))
		admin.share = 100
		changed := *o
		changed.CostLimitLifetime = 60 * money.Cent
		done := make(chan error, 1)
		go func() { done <- admin.PutOrg(ctx, &changed) }()
		<-entered
		var admitted money.Nanos
		for i := range 40 {
			r, err := orgReserve(s, fmt.Sprintf("new-%d", i), "x", &changed, now, 5*money.Cent)
			var le *budget.LimitError
			if errors.As(err, &le) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "x", now, 5*money.Cent)
			admitted += 5 * money.Cent
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := lifetime(t, s); got > changed.CostLimitLifetime {
			t.Errorf("admitted %v under the new 60c lifetime limit with 50c already spent: lifetime committed %v", admitted, got)
		}
	})
	t.Run("a revocation interrupted", func(t *testing.T) {
		now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
		o := &user.Org{CostLimitPerMonth: 10 * money.Dollar, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "laterbroken", 100, o) // slices of 10c
		r := mustReserve(t, s, "a", "k", o, now, money.Cent)
		settleAt(t, s, r, "k", now, money.Cent)
		// PutOrg removes av on k's ledger, then fails to take its 9c back.
		fail := func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
			if _, ok := in.(*ddb.TransactWriteItemsInput); ok {
				return nil, errors.New("injected: the admin function timed out")
			}
			return next(ctx)
		}
		if err := New(s.db, s.table, 0, WithMiddleware(fail)).PutOrg(ctx, o); err == nil {
			t.Fatal("want PutOrg's injected failure")
		}
		for i := range 3 {
			if _, err := orgReserve(s, fmt.Sprintf("b%d", i), "k", o, now, money.Cent); err != nil {
				t.Errorf("request %d of k under the stored settings: %v", i, err)
			}
		}
	})
	t.Run("a month's reclaim leaves the lifetime's allowances", func(t *testing.T) {
		start, _, _ := budget.Window(budget.Month, testclock.Now(t))
		before, after := start.Add(-24*time.Hour), start.Add(time.Hour)
		o := &user.Org{CostLimitLifetime: 10 * money.Dollar, CostLimitPerMonth: 2 * money.Cent, UpdatedAt: before.Unix()}
		s := orgStore(t, endpoint, "laterlifetime", 10, o) // month slices 0.2c, lifetime $1
		refused := false
		for i := range 100 {
			r, err := orgReserve(s, fmt.Sprintf("m-%d", i), "k", o, before, money.Cent/10)
			var le *budget.LimitError
			if errors.As(err, &le) {
				refused = true
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			settleAt(t, s, r, "k", before, money.Cent/10)
		}
		if !refused {
			t.Fatal("the month's limit was never reached")
		}
		funded := 0
		for i := range 5 {
			r := mustReserve(t, s, fmt.Sprintf("n-%d", i), "k", o, after, money.Cent/10)
			if r.Funded != 0 {
				funded++
			}
			settleAt(t, s, r, "k", after, money.Cent/10)
		}
		if life := rawItem(t, s, pkOrg, counterSK(budget.LifetimeSpend())); funded == 0 {
			t.Errorf("the next month: none of 5 requests paid by allowances (lifetime drained=%d reclaimed=%d)",
				getN(life, attrDrained), getN(life, attrReclaimed))
		}
	})
	t.Run("a reclaim and a busy key", func(t *testing.T) {
		now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
		o := &user.Org{CostLimitPerMonth: 20 * money.Cent, UpdatedAt: now.Unix()}
		s := orgStore(t, endpoint, "laterstarve", 2, o) // slices of 10c
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r, err := orgReserve(s, fmt.Sprintf("hot-%d-%d", w, i), "hot", o, now, money.Cent/10)
					if err != nil {
						continue
					}
					_ = s.Settle(ctx, r, &ledger.Event{ID: r.ID, KeyID: "hot", Status: 200, Cost: money.Cent / 100, CreatedAt: now.UnixMilli()})
				}
			}()
		}
		time.Sleep(300 * time.Millisecond) // the hot key holds an allowance
		var errs, oks int
		for i := range 30 {
			r, err := orgReserve(s, fmt.Sprintf("cold-%d", i), "cold", o, now, 4*money.Cent)
			var le *budget.LimitError
			switch {
			case errors.As(err, &le):
			case err != nil:
				errs++
				t.Logf("cold %d: %v", i, err)
			default:
				oks++
				settleAt(t, s, r, "cold", now, 4*money.Cent)
			}
		}
		close(stop)
		wg.Wait()
		if errs > 0 {
			t.Errorf("%d of the cold key's reserves failed with an error, not a limit, while the hot key was busy; %d admitted", errs, oks)
		}
	})
}

// TestDeferralKeptOpen: when settles planned without the organisation's
// limit keep reopening its deferral, the reserve's last round reads the
// pending spend and the shards itself; a drain between the two reads
// must not make the pending spend vanish from both (found by review).
func TestDeferralKeptOpen(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "keptopen")
	unlimited := &user.Org{}
	settleUnlimited := func(id string, cost money.Nanos) {
		t.Helper()
		r, _ := orgPlan(id, "k", unlimited, now, cost)
		r.Checks = nil // planned from settings cached before the limit
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		settleAt(t, s, r, "k", now, cost)
	}
	settleUnlimited("before", 6*money.Cent)
	// 9c in all by the reserve's last round (6c, then 1c at each of its
	// later rounds): a limit of 13c leaves no room for 5c.
	o := &user.Org{CostLimitPerMonth: 13 * money.Cent, UpdatedAt: now.Unix()}
	if err := s.PutOrg(ctx, o); err != nil {
		t.Fatal(err)
	}
	rounds, drained := 0, false
	reopen := func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
		if b, ok := in.(*ddb.BatchGetItemInput); ok {
			for _, ka := range b.RequestItems {
				for _, k := range ka.Keys {
					switch {
					case getS(k, attrPK) == pkOrg && getS(k, attrSK) == skDeferral:
						if rounds > 0 && rounds <= closeRounds {
							settleUnlimited(fmt.Sprintf("reopen-%d", rounds), money.Cent)
						}
						rounds++
					case getS(k, attrPK) == keyPK("k") && rounds > closeRounds && !drained:
						// A sweep drains k between the reserve's reads.
						drained = true
						if err := s.drain(ctx, "k", pkOrg, "", false); err != nil {
							t.Error(err)
						}
					}
				}
			}
		}
		return next(ctx)
	}
	limited := New(s.db, s.table, 0, WithMiddleware(reopen))
	r, _ := orgPlan("x1", "x", o, now, 5*money.Cent)
	err := limited.Reserve(ctx, r)
	t.Logf("%d rounds, drained between the reads: %v", rounds, drained)
	if !drained {
		t.Fatal("the reserve never reached its last round's reads")
	}
	var le *budget.LimitError
	if !errors.As(err, &le) {
		tot, _ := s.OwnerTotals(ctx, pkOrg, counterSK(budget.MonthSpend(now)))
		t.Errorf("5c admitted with 9c of 13c spent (reserve: %v); the month now %+v", err, tot)
	}
}
