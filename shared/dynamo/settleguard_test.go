package dynamo

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// TestSettleOfAnEndedReservation: the settle reads nothing before its
// writes; the ledger decides whether the reservation was still open, and
// a settle of one that had ended (released, abandoned) takes back the event
// it stored, with its aggregates and the deferred counts: no event, no
// count, for a request that was never forwarded.
func TestSettleOfAnEndedReservation(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	for i, tc := range []struct {
		name string
		org  *budget.Limits
	}{
		// The user's and organisation's spend is deferred, counted with the event.
		{"no user or organisation limit", nil},
		// The organisation's month is reserved, so the settle is a
		// transaction, which counts the deferred spend (the lifetimes).
		{"organisation limit", &budget.Limits{PerMonth: money.Dollar}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
			s := newStore(t, endpoint, "settleguard"+strconv.Itoa(i))
			if err := s.CreateKey(ctx, &apikey.Key{ID: "k", CreatedAt: 1}); err != nil {
				t.Fatal(err)
			}
			reservation := func(id string) *budget.Reservation {
				req := budget.Request{KeyID: "k", UserID: "u", Org: tc.org, Model: "gpt-4o-mini", Family: "gpt-4o-mini", Cost: money.Cent, Tokens: 100, Now: now}
				return &budget.Reservation{ID: id, KeyID: "k", Checks: []budget.Check{{Kind: budget.CheckKey, ID: "k", Version: 1}},
					Charges: budget.Plan(req), Cost: money.Cent, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 90}, Deadline: now.Add(time.Minute),
					Event: ledger.Event{ID: id, KeyID: "k", UserID: "u", Model: "gpt-4o-mini", Status: 200, CustomID: "lab", CreatedAt: now.UnixMilli()}}
			}
			event := func(r *budget.Reservation) *ledger.Event {
				ev := r.Event
				ev.Cost, ev.Usage, ev.LatencyMs = money.Cent/2, ledger.Usage{PromptTokens: 10, CompletionTokens: 40}, 7
				return &ev
			}
			settled := reservation("settled")
			if err := s.Reserve(ctx, settled); err != nil {
				t.Fatal(err)
			}
			if err := s.Settle(ctx, settled, event(settled)); err != nil {
				t.Fatal(err)
			}
			for _, end := range []string{"released", "abandoned"} {
				r := reservation(end)
				if err := s.Reserve(ctx, r); err != nil {
					t.Fatal(err)
				}
				var err error
				if end == "released" {
					err = s.Release(ctx, r)
				} else {
					err = s.Abandon(ctx, r)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Settle(ctx, r, event(r)); !errors.Is(err, budget.ErrSettled) {
					t.Fatalf("settle of a %s reservation: %v, want ErrSettled", end, err)
				}
			}
			// A second settle of the settled one finds its event: nothing to take back.
			if err := s.Settle(ctx, settled, event(settled)); !errors.Is(err, budget.ErrSettled) {
				t.Fatalf("second settle: %v, want ErrSettled", err)
			}

			var evs []*ledger.Event
			if err := s.Events(ctx, "k", now.Add(-time.Hour), now.Add(time.Hour), func(e *ledger.Event) error { evs = append(evs, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].ID != "settled" {
				t.Fatalf("events %+v, want the settled one alone", evs)
			}
			days, err := s.DailyAggregates(ctx, []string{"k"}, now.Add(-24*time.Hour), now.Add(24*time.Hour))
			if err != nil || len(days) != 1 || days[0].Requests != 1 || days[0].Cost != money.Cent/2 || days[0].CompletionTokens != 40 || days[0].LatencyMs != 7 {
				t.Fatalf("daily aggregates %+v, %v", days, err)
			}
			cids, err := s.CustomIDTotals(ctx, "k")
			if err != nil || len(cids) != 1 || cids[0].Requests != 1 || cids[0].Cost != money.Cent/2 {
				t.Fatalf("custom ids %+v, %v", cids, err)
			}
			for _, owner := range []budget.Owner{budget.UserOwner("u"), budget.OrgOwner()} {
				for _, c := range []budget.Counter{budget.LifetimeSpend(), budget.MonthSpend(now)} {
					tot, err := s.CounterTotals(ctx, owner, c)
					if err != nil || tot.Cost != money.Cent/2 || tot.Committed != money.Cent/2 || tot.Requests != 1 || tot.CompletionTokens != 40 {
						t.Errorf("%s %s: %+v, %v", owner, c, tot, err)
					}
				}
			}
			if tot, err := s.KeyTotals(ctx, "k"); err != nil || tot.Cost != money.Cent/2 || tot.Requests != 1 {
				t.Errorf("key totals %+v, %v", tot, err)
			}
		})
	}
}
