package dynamo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// dayModel names one day-and-model aggregate.
type dayModel struct {
	key, model string
	day        int64
}

// sumEvents adds up evs as the aggregates
// should: per key, day and model, and per key and custom id.
func sumEvents(evs []*ledger.Event) (map[dayModel]ledger.Totals, map[string]map[string]ledger.CustomIDTotals) {
	days := map[dayModel]ledger.Totals{}
	cids := map[string]map[string]ledger.CustomIDTotals{}
	for _, ev := range evs {
		created := time.UnixMilli(ev.CreatedAt).UTC()
		dm := dayModel{ev.KeyID, ev.Model, time.Date(created.Year(), created.Month(), created.Day(), 0, 0, 0, 0, time.UTC).Unix()}
		t := days[dm]
		t.Cost += ev.Cost
		t.Requests++
		if ev.Success() {
			t.Successes++
		}
		t.PromptTokens += ev.Usage.PromptTokens
		t.CachedTokens += ev.Usage.CachedTokens
		t.CompletionTokens += ev.Usage.CompletionTokens
		t.LatencyMs += ev.LatencyMs
		days[dm] = t
		if ev.CustomID != "" {
			if cids[ev.KeyID] == nil {
				cids[ev.KeyID] = map[string]ledger.CustomIDTotals{}
			}
			c := cids[ev.KeyID][ev.CustomID]
			c.CustomID = ev.CustomID
			c.Requests++
			c.Cost += ev.Cost
			c.LastSeen = max(c.LastSeen, ev.CreatedAt) // the latest start (a stale one settles late)
			cids[ev.KeyID][ev.CustomID] = c
		}
	}
	return days, cids
}

func TestAggregatesEqualEvents(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "aggregates")

	day1 := testclock.Now(t).Truncate(24*time.Hour).AddDate(0, 0, -11)
	day2 := day1.AddDate(0, 0, 1)
	keys := []string{"ka", "kb"}
	models := []string{"gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"}
	customIDs := []string{"", "student-1", "run#7", "ünïcode"}

	// One kind of request per row: a streamed success, a non-streamed one,
	// an upstream error (status 500, cost 0), a client disconnect
	// (incomplete, estimated tokens) and a success with cached tokens.
	kinds := []struct {
		name   string
		status int
		cost   money.Nanos
		usage  ledger.Usage
		mutate func(*ledger.Event)
	}{
		{"stream", 200, 123 * money.Micro, ledger.Usage{PromptTokens: 40, CompletionTokens: 12}, func(ev *ledger.Event) { ev.Stream = true }},
		{"plain", 200, 77 * money.Micro, ledger.Usage{PromptTokens: 30, CompletionTokens: 9}, nil},
		{"upstream error", 500, 0, ledger.Usage{}, func(ev *ledger.Event) { ev.ErrorCode = "upstream_error" }},
		{"disconnect", 200, 31 * money.Micro, ledger.Usage{PromptTokens: 40, CompletionTokens: 3}, func(ev *ledger.Event) {
			ev.Stream, ev.Incomplete, ev.Estimated, ev.ErrorCode = true, true, true, "client_disconnected"
		}},
		{"cached", 200, 50 * money.Micro, ledger.Usage{PromptTokens: 100, CachedTokens: 64, CompletionTokens: 5}, nil},
	}

	var evs []*ledger.Event
	n := 0
	for ki, keyID := range keys {
		for di, day := range []time.Time{day1, day2} {
			for mi, model := range models {
				for k, kind := range kinds {
					n++
					// Spread over the day, including its first and last millisecond.
					at := day.Add(time.Duration(k*mi*ki*4999) * time.Second)
					switch {
					case k == 0 && mi == 0:
						at = day
					case k == 1 && mi == 0:
						at = day.Add(24*time.Hour - time.Millisecond)
					}
					ev := &ledger.Event{
						ID: fmt.Sprintf("ev-%03d", n), KeyID: keyID, Model: model, Path: "/v1/chat/completions", Method: "POST",
						Status: kind.status, Usage: kind.usage, Cost: kind.cost + money.Nanos(di+mi), LatencyMs: int64(100*k + 7*mi + di),
						CustomID: customIDs[(n+ki)%len(customIDs)], CreatedAt: at.UnixMilli(),
					}
					if kind.status != 200 {
						ev.Cost = 0
					}
					if kind.mutate != nil {
						kind.mutate(ev)
					}
					evs = append(evs, ev)
				}
			}
		}
	}

	// Settle every event through a real reservation; a request that was
	// never forwarded (released) and a stale one add to the traffic.
	for _, ev := range evs {
		req := budget.Request{KeyID: ev.KeyID, Key: budget.Limits{Lifetime: money.Dollar * 100}, Cost: money.Cent, Tokens: 1000, Model: ev.Model,
			Now: time.UnixMilli(ev.CreatedAt)}
		r := &budget.Reservation{ID: ev.ID, KeyID: ev.KeyID, Charges: budget.Plan(req), Cost: req.Cost, Deadline: time.Now().Add(time.Minute)}
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatalf("reserve %s: %v", ev.ID, err)
		}
		if err := s.Settle(ctx, r, ev); err != nil {
			t.Fatalf("settle %s: %v", ev.ID, err)
		}
		if err := s.Settle(ctx, r, ev); !errors.Is(err, budget.ErrSettled) {
			t.Fatalf("second settle of %s: %v, want ErrSettled (and no double count)", ev.ID, err)
		}
	}
	released := &budget.Reservation{ID: "released", KeyID: "ka", Charges: budget.Plan(budget.Request{KeyID: "ka", Cost: money.Cent, Now: day1}),
		Cost: money.Cent, Deadline: time.Now().Add(time.Minute)}
	if err := s.Reserve(ctx, released); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, released); err != nil {
		t.Fatal(err)
	}
	stale := &budget.Reservation{ID: "stale", KeyID: "kb", Charges: budget.Plan(budget.Request{KeyID: "kb", Cost: money.Cent, Now: day2}),
		Cost: money.Cent, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 200}, Deadline: time.Now().Add(-time.Minute),
		Event: ledger.Event{ID: "stale", KeyID: "kb", Model: "gpt-4o", Status: 200, CustomID: "student-1", CreatedAt: day2.Add(time.Hour).UnixMilli()}}
	if err := s.Reserve(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := s.SettleStale(ctx, stale); err != nil {
		t.Fatal(err)
	}

	// What the stored events add up to.
	var stored []*ledger.Event
	for _, k := range keys {
		if err := s.Events(ctx, k, day1, day2.AddDate(0, 0, 1), func(ev *ledger.Event) error {
			stored = append(stored, ev)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	settled := append(evs, &stale.Event)
	if len(stored) != len(settled) {
		t.Fatalf("%d events stored, want %d", len(stored), len(settled))
	}
	// The stored events, put back in the order they were settled.
	order := map[string]int{}
	for i, ev := range settled {
		order[ev.ID] = i
	}
	sort.Slice(stored, func(i, j int) bool { return order[stored[i].ID] < order[stored[j].ID] })
	wantDays, wantCIDs := sumEvents(stored)

	tests := []struct {
		name       string
		start, end time.Time
		days       []int64
	}{
		{"both days", day1, day2.AddDate(0, 0, 1), []int64{day1.Unix(), day2.Unix()}},
		{"first day exactly", day1, day2, []int64{day1.Unix()}},
		{"mid-day range covers both days", day1.Add(23 * time.Hour), day2.Add(time.Second), []int64{day1.Unix(), day2.Unix()}},
		{"a second of day 2", day2.Add(5 * time.Hour), day2.Add(5*time.Hour + time.Second), []int64{day2.Unix()}},
		{"before", day1.AddDate(0, 0, -3), day1, nil},
		{"after", day2.AddDate(0, 0, 1), day2.AddDate(0, 0, 9), nil},
		{"empty range", day2, day1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.DailyAggregates(ctx, keys, tc.start, tc.end)
			if err != nil {
				t.Fatal(err)
			}
			want := map[dayModel]ledger.Totals{}
			for dm, tot := range wantDays {
				for _, d := range tc.days {
					if dm.day == d {
						want[dm] = tot
					}
				}
			}
			got := map[dayModel]ledger.Totals{}
			for i, r := range rows {
				dm := dayModel{r.KeyID, r.Model, r.Day}
				if _, dup := got[dm]; dup {
					t.Fatalf("row %+v twice", dm)
				}
				got[dm] = r.Totals
				// Ordered per key (as given), then day, then model.
				if i > 0 {
					p := rows[i-1]
					if p.KeyID == r.KeyID && (p.Day > r.Day || p.Day == r.Day && p.Model >= r.Model) {
						t.Errorf("rows out of order: %+v then %+v", p, r)
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("aggregates differ from the events' sums\n got %v\nwant %v", got, want)
			}
			if len(tc.days) > 0 && len(rows) != len(keys)*len(models)*len(tc.days) {
				t.Errorf("%d rows, want one per key, model and day (%d)", len(rows), len(keys)*len(models)*len(tc.days))
			}
		})
	}

	t.Run("custom ids", func(t *testing.T) {
		for _, k := range keys {
			ids, err := s.CustomIDs(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for id := range wantCIDs[k] {
				want = append(want, id)
			}
			sort.Strings(want)
			if !reflect.DeepEqual(ids, want) {
				t.Errorf("key %s: custom ids %q, want %q", k, ids, want)
			}
			totals, err := s.CustomIDTotals(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]ledger.CustomIDTotals{}
			for _, c := range totals {
				got[c.CustomID] = c
			}
			if !reflect.DeepEqual(got, wantCIDs[k]) {
				t.Errorf("key %s: custom id figures\n got %v\nwant %v", k, got, wantCIDs[k])
			}
		}
		if ids, err := s.CustomIDs(ctx, "no-such-key"); err != nil || len(ids) != 0 {
			t.Errorf("unknown key: %q, %v", ids, err)
		}
	})

	t.Run("lifetime counters agree", func(t *testing.T) {
		for _, k := range keys {
			life, err := s.KeyTotals(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			var sum ledger.Totals
			for dm, tot := range wantDays {
				if dm.key == k {
					sum.Cost += tot.Cost
					sum.Requests += tot.Requests
				}
			}
			if life.Cost != sum.Cost || life.Requests != sum.Requests {
				t.Errorf("key %s: lifetime %s over %d requests, aggregates %s over %d", k, life.Cost, life.Requests, sum.Cost, sum.Requests)
			}
		}
	})
}

func TestImport(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "import")
	day := testclock.Now(t).Truncate(24*time.Hour).AddDate(0, -11, 0)

	var rows []ledger.DailyAggregate
	for i := range 60 { // more than two batches
		rows = append(rows, ledger.DailyAggregate{KeyID: fmt.Sprintf("k%d", i%3), Day: day.AddDate(0, 0, i/3).Unix(), Model: "m",
			Totals: ledger.Totals{Cost: money.Nanos(i), Requests: int64(i + 1), Successes: int64(i), LatencyMs: 10}})
	}
	if err := s.ImportDailyAggregates(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got, err := s.DailyAggregates(ctx, []string{"k0", "k1", "k2"}, day, day.AddDate(0, 0, 30))
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]ledger.DailyAggregate{}
	for _, r := range rows {
		byKey[r.KeyID] = append(byKey[r.KeyID], r)
	}
	want := append(append(byKey["k0"], byKey["k1"]...), byKey["k2"]...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("imported aggregates read back as\n %+v\nwant\n %+v", got, want)
	}

	var evs []*ledger.Event
	for i := range 30 {
		evs = append(evs, &ledger.Event{ID: fmt.Sprintf("e%02d", i), KeyID: "k0", Status: 200, CreatedAt: day.Add(time.Duration(i) * time.Minute).UnixMilli()})
	}
	if err := s.ImportEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	count := 0
	if err := s.Events(ctx, "k0", day, day.Add(time.Hour), func(*ledger.Event) error { count++; return nil }); err != nil || count != 30 {
		t.Errorf("%d imported events read back, %v", count, err)
	}
}

func TestForEach(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		n       int
		failAt  int // -1: none
		wantErr error
	}{
		{"none", 0, -1, nil},
		{"all succeed", 50, -1, nil},
		{"one fails", 50, 7, boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make([]bool, tc.n)
			err := forEach(context.Background(), tc.n, 4, func(_ context.Context, i int) error {
				seen[i] = true
				if i == tc.failAt {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil {
				for i, ok := range seen {
					if !ok {
						t.Errorf("item %d not visited", i)
					}
				}
			}
		})
	}
}
