package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// race runs n reservations for keys[i%len(keys)] concurrently; each that is
// admitted settles at actual. It returns how many were admitted.
func race(t *testing.T, s *Store, n int, keys []string, plan func(keyID string) budget.Request, actual money.Nanos) (admitted int64, limited map[string]int) {
	t.Helper()
	return raceReserves(t, s, n, keys, func(i int, keyID string) (*budget.Reservation, budget.Request) {
		req := plan(keyID)
		return &budget.Reservation{ID: fmt.Sprintf("%s-r%03d", t.Name(), i), KeyID: keyID, Charges: budget.Plan(req), Cost: req.Cost,
			Deadline: time.Now().Add(time.Minute)}, req
	}, actual)
}

// raceReserves is race with the reservations that build makes for request
// i of keyID (and the request they were planned from).
func raceReserves(t *testing.T, s *Store, n int, keys []string, build func(i int, keyID string) (*budget.Reservation, budget.Request), actual money.Nanos) (admitted int64, limited map[string]int) {
	t.Helper()
	ctx := context.Background()
	var ok atomic.Int64
	var mu sync.Mutex
	limited = map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			keyID := keys[i%len(keys)]
			r, req := build(i, keyID)
			err := s.Reserve(ctx, r)
			var le *budget.LimitError
			switch {
			case errors.As(err, &le):
				mu.Lock()
				limited[le.Charge.Scope]++
				mu.Unlock()
				return
			case err != nil:
				t.Errorf("reserve: %v", err)
				return
			}
			ok.Add(1)
			time.Sleep(time.Millisecond) // the "request" runs while others race
			// Actual tokens equal the reserved ones, so token windows stay exact.
			ev := &ledger.Event{ID: r.ID, KeyID: keyID, Status: 200, Cost: actual, Usage: ledger.Usage{PromptTokens: req.Tokens}, CreatedAt: time.Now().UnixMilli()}
			if err := s.Settle(ctx, r, ev); err != nil {
				t.Errorf("settle: %v", err)
			}
		}(i)
	}
	wg.Wait()
	return ok.Load(), limited
}

func TestReservations(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute) // on a minute boundary, like 16:55:00

	t.Run("key budget under 200 concurrent requests", func(t *testing.T) {
		s := newStore(t, endpoint, "keybudget")
		const worst, actual = 10 * money.Cent, 6 * money.Cent // each request may cost 10c, really costs 6c
		limit := money.Dollar
		admitted, limited := race(t, s, 200, []string{"k"}, func(k string) budget.Request {
			return budget.Request{KeyID: k, Key: budget.Limits{Lifetime: limit}, Cost: worst, Now: now}
		}, actual)
		tot, _ := s.KeyTotals(ctx, "k")
		t.Logf("key budget $1, worst 10c, actual 6c: admitted %d of 200, spent $%s, committed $%s, limited %v", admitted, tot.Cost, tot.Committed, limited)
		if tot.Cost > limit || tot.Committed != tot.Cost {
			t.Fatalf("spent %s (committed %s) over limit %s", tot.Cost, tot.Committed, limit)
		}
		// At least limit/worst fit, at most limit/actual.
		if admitted < int64(limit/worst) || admitted > int64(limit/actual) || tot.Requests != admitted {
			t.Fatalf("admitted %d (recorded %d), want between %d and %d", admitted, tot.Requests, limit/worst, limit/actual)
		}
		if limited["key lifetime spend"] != 200-int(admitted) {
			t.Fatalf("rejections %v", limited)
		}
	})

	t.Run("user budget shared by 5 keys", func(t *testing.T) {
		s := newStore(t, endpoint, "userbudget")
		user := budget.Limits{Lifetime: 50 * money.Cent}
		keys := []string{"k1", "k2", "k3", "k4", "k5"}
		admitted, _ := race(t, s, 100, keys, func(k string) budget.Request {
			return budget.Request{KeyID: k, UserID: "alice", User: &user, Cost: 5 * money.Cent, Now: now}
		}, 5*money.Cent)
		tot, _ := s.OwnerTotals(ctx, "USER#alice", budget.LifetimeCounter)
		t.Logf("user budget 50c over 5 keys, 5c each: admitted %d of 100, spent $%s", admitted, tot.Cost)
		if admitted != 10 || tot.Cost != 50*money.Cent {
			t.Fatalf("admitted %d, user spent %s", admitted, tot.Cost)
		}
	})

	t.Run("organisation budget across 20 keys", func(t *testing.T) {
		s := newStore(t, endpoint, "orgbudget")
		org := budget.Limits{Lifetime: money.Dollar, PerMonth: 30 * money.Cent}
		var keys []string
		for i := 0; i < 20; i++ {
			keys = append(keys, fmt.Sprintf("k%02d", i))
		}
		admitted, limited := race(t, s, 100, keys, func(k string) budget.Request {
			return budget.Request{KeyID: k, Org: &org, Cost: 3 * money.Cent, Now: now}
		}, 3*money.Cent)
		month, _ := s.OwnerTotals(ctx, "ORG", budget.MonthCounter(now))
		t.Logf("org 30c per month, 3c each, 100 requests over 20 keys: admitted %d, org month spend $%s, limited %v", admitted, month.Cost, limited)
		if admitted != 10 || month.Cost != 30*money.Cent || limited["organisation monthly spend"] != 90 {
			t.Fatalf("admitted %d, org spent %s, limited %v", admitted, month.Cost, limited)
		}
	})

	t.Run("rate limits are exact", func(t *testing.T) {
		tests := []struct {
			name  string
			key   budget.Limits
			tok   int64
			want  int64
			scope string
		}{
			{"5 per minute", budget.Limits{Rate: 5, RateUnit: budget.Minute}, 100, 5, "key requests per minute"},
			{"model rpm 7", budget.Limits{Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 7}}}, 100, 7, "requests per minute for gpt-4o-mini"},
			{"model tpm 1600 at 300 tokens", budget.Limits{Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {TPM: 1600}}}, 300, 5, "tokens per minute for gpt-4o-mini"},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t, endpoint, fmt.Sprintf("rate%d", i))
				admitted, limited := race(t, s, 50, []string{"k"}, func(k string) budget.Request {
					return budget.Request{KeyID: k, Key: tt.key, Model: "gpt-4o-mini", Family: "gpt-4o-mini", Cost: money.Micro, Tokens: tt.tok, Now: now}
				}, money.Micro)
				t.Logf("%s: admitted %d of 50", tt.name, admitted)
				if admitted != tt.want || limited[tt.scope] != 50-int(tt.want) {
					t.Fatalf("admitted %d, limited %v", admitted, limited)
				}
			})
		}
	})

	t.Run("a full month serves again on the 1st", func(t *testing.T) {
		s := newStore(t, endpoint, "month")
		key := budget.Limits{PerMonth: 10 * money.Cent}
		reserve := func(at time.Time, id string) error {
			req := budget.Request{KeyID: "k", Key: key, Cost: 10 * money.Cent, Now: at}
			r := &budget.Reservation{ID: id, KeyID: "k", Charges: budget.Plan(req), Cost: req.Cost, Deadline: at.Add(time.Minute)}
			if err := s.Reserve(ctx, r); err != nil {
				return err
			}
			return s.Settle(ctx, r, &ledger.Event{ID: id, KeyID: "k", Status: 200, Cost: req.Cost, CreatedAt: at.UnixMilli()})
		}
		nov := testclock.MonthStart(now, 0).Add(-time.Minute) // the last minute of last month
		if err := reserve(nov, "m1"); err != nil {
			t.Fatal(err)
		}
		var le *budget.LimitError
		if err := reserve(nov.Add(30*time.Second), "m2"); !errors.As(err, &le) || le.Charge.Scope != "key monthly spend" {
			t.Fatalf("full month admitted: %v", err)
		} else if ra := le.Charge.RetryAfter(nov.Add(30 * time.Second)); ra != 30*time.Second {
			t.Fatalf("Retry-After = %v, want 30s (until the 1st)", ra)
		}
		if err := reserve(testclock.MonthStart(now, 0), "m3"); err != nil {
			t.Fatalf("new month refused: %v", err)
		}
	})

	t.Run("stale reservation settles once at worst case", func(t *testing.T) {
		s := newStore(t, endpoint, "stale")
		// A user and the organisation without limits: their spend is
		// deferred, and the sweep counts it too, at the worst case.
		req := budget.Request{KeyID: "k", Key: budget.Limits{Lifetime: money.Dollar}, UserID: "u", Cost: 40 * money.Cent, Now: now}
		r := &budget.Reservation{ID: "dead", KeyID: "k", Charges: budget.Plan(req), Cost: req.Cost, Usage: ledger.Usage{PromptTokens: 100, CompletionTokens: 900},
			Deadline: now.Add(5 * time.Minute), Event: ledger.Event{ID: "dead", KeyID: "k", Model: "gpt-4o-mini", Status: 200, CreatedAt: now.UnixMilli()}}
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		if list, _ := s.StaleReservations(ctx, now.Add(4*time.Minute)); len(list) != 0 {
			t.Fatalf("not yet stale, got %d", len(list))
		}
		list, err := s.StaleReservations(ctx, now.Add(6*time.Minute))
		if err != nil || len(list) != 1 {
			t.Fatalf("stale = %d, %v", len(list), err)
		}
		if err := s.SettleStale(ctx, list[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.SettleStale(ctx, list[0]); !errors.Is(err, budget.ErrSettled) {
			t.Fatalf("second sweep: %v", err)
		}
		// The invocation wakes up late and tries to settle: nothing changes.
		if err := s.Settle(ctx, r, &ledger.Event{ID: "dead", KeyID: "k", Cost: money.Cent}); !errors.Is(err, budget.ErrSettled) {
			t.Fatalf("late settle: %v", err)
		}
		for _, owner := range []string{"KEY#k", "USER#u", "ORG"} {
			for _, c := range []string{budget.LifetimeCounter, budget.MonthCounter(now)} {
				tot, _ := s.OwnerTotals(ctx, owner, c)
				if tot.Cost != 40*money.Cent || tot.Committed != 40*money.Cent || tot.Requests != 1 {
					t.Fatalf("%s %s totals %+v", owner, c, tot)
				}
			}
		}
		var evs []*ledger.Event
		s.Events(ctx, "k", now.Add(-time.Hour), now.Add(time.Hour), func(e *ledger.Event) error { evs = append(evs, e); return nil })
		if len(evs) != 1 || !evs[0].Incomplete || evs[0].Cost != 40*money.Cent || evs[0].Usage.CompletionTokens != 900 {
			t.Fatalf("events %+v", evs)
		}
		if list, _ := s.StaleReservations(ctx, now.Add(time.Hour)); len(list) != 0 {
			t.Fatalf("still stale: %d", len(list))
		}
	})

	t.Run("changed configuration is detected", func(t *testing.T) {
		s := newStore(t, endpoint, "version")
		s.CreateKey(ctx, &apikey.Key{ID: "k", CreatedAt: 1})
		check := []budget.Check{{Kind: budget.CheckKey, ID: "k", Version: 1}}
		r := &budget.Reservation{ID: "v1", KeyID: "k", Checks: check, Charges: budget.Plan(budget.Request{KeyID: "k", Cost: 1, Now: now}), Deadline: now}
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		k, _ := s.GetKey(ctx, "k")
		k.Revoked = true
		s.UpdateKey(ctx, k)
		r2 := &budget.Reservation{ID: "v2", KeyID: "k", Checks: check, Charges: r.Charges, Deadline: now}
		if err := s.Reserve(ctx, r2); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("stale config not detected: %v", err)
		}
		// Release gives the spend back but keeps counting the request.
		if err := s.Release(ctx, r); err != nil {
			t.Fatal(err)
		}
		if tot, _ := s.KeyTotals(ctx, "k"); tot.Committed != 0 {
			t.Fatalf("after release %+v", tot)
		}
	})

	t.Run("abandon: nothing charged, whether the reserve landed before or lands after", func(t *testing.T) {
		s := newStore(t, endpoint, "abandon")
		plan := func(id string) *budget.Reservation {
			req := budget.Request{KeyID: "k", Key: budget.Limits{Lifetime: money.Dollar}, UserID: "u", User: &budget.Limits{Lifetime: money.Dollar},
				Org: &budget.Limits{PerMonth: money.Dollar}, Cost: 30 * money.Cent, Now: now}
			return &budget.Reservation{ID: id, KeyID: "k", Charges: budget.Plan(req), Cost: req.Cost, Deadline: now.Add(time.Minute),
				Event: ledger.Event{ID: id, KeyID: "k", UserID: "u", Status: 200, CreatedAt: now.UnixMilli()}}
		}
		// Landed before: Abandon gives every amount back; again, it is a no-op.
		landed := plan("landed")
		if err := s.Reserve(ctx, landed); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Abandon(ctx, landed); err != nil {
				t.Fatal(err)
			}
		}
		// Lands after: the tombstone makes the whole late reserve fail.
		late := plan("late")
		if err := s.Abandon(ctx, late); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, late); err == nil {
			t.Fatal("a reserve landed after its abandon")
		}
		for _, r := range []*budget.Reservation{landed, late} {
			if err := s.Settle(ctx, r, &ledger.Event{ID: r.ID, KeyID: "k", Cost: money.Cent}); !errors.Is(err, budget.ErrSettled) {
				t.Fatalf("settle after abandon: %v", err)
			}
		}
		for _, c := range []struct{ owner, name string }{
			{"KEY#k", budget.LifetimeCounter}, {"USER#u", budget.LifetimeCounter}, {"ORG", budget.MonthCounter(now)}, {"ORG", budget.LifetimeCounter},
		} {
			if tot, _ := s.OwnerTotals(ctx, c.owner, c.name); tot.Committed != 0 || tot.Cost != 0 || tot.Requests != 0 {
				t.Errorf("%s %s after abandons: %+v", c.owner, c.name, tot)
			}
		}
		if list, _ := s.StaleReservations(ctx, now.Add(time.Hour)); len(list) != 0 {
			t.Fatalf("the sweep would charge %d abandoned reservations", len(list))
		}
	})

	t.Run("a single request above the limit never reaches storage", func(t *testing.T) {
		s := newStore(t, endpoint, "toobig")
		r := &budget.Reservation{ID: "big", Charges: budget.Plan(budget.Request{KeyID: "k", Key: budget.Limits{Lifetime: money.Cent}, Cost: 2 * money.Cent, Now: now})}
		var le *budget.LimitError
		if err := s.Reserve(ctx, r); !errors.As(err, &le) {
			t.Fatalf("err = %v", err)
		}
	})
}
