package rollover_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/dynamotest"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/rollover"
	"github.com/stipend/stipend/shared/testclock"
)

// TestMonthCloseOnDynamoDB runs the reset against DynamoDB Local: a month
// with one settled request and one abandoned reservation closes into a
// statement that counts both, and a second run changes nothing.
func TestMonthCloseOnDynamoDB(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := dynamotest.Store(t, endpoint, "rollover")
	if err := s.CreateKey(ctx, &apikey.Key{ID: "k", CreatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	at := testclock.MonthStart(testclock.Now(t), 0) // the monthly run
	nov := at.Add(-10 * time.Minute)                // the last minutes of the month it closes
	period := nov.Format("2006-01")
	reserve := func(id string, cost money.Nanos) *budget.Reservation {
		req := budget.Request{KeyID: "k", Key: budget.Limits{PerMonth: money.Dollar}, Cost: cost, Now: nov}
		r := &budget.Reservation{ID: id, KeyID: "k", Charges: budget.Plan(req), Cost: cost, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 90},
			Deadline: nov.Add(5 * time.Minute), Event: ledger.Event{ID: id, KeyID: "k", Model: "gpt-4o-mini", Status: 200, CreatedAt: nov.UnixMilli()}}
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	done := reserve("done", 20*money.Cent)
	if err := s.Settle(ctx, done, &ledger.Event{ID: "done", KeyID: "k", Status: 200, Cost: 5 * money.Cent, CreatedAt: nov.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	reserve("dead", 30*money.Cent) // its invocation never settles

	log := slog.New(slog.DiscardHandler)
	rep, err := rollover.Run(ctx, s, rollover.MonthlyClose, at, log)
	if err != nil || rep.Settled != 1 || rep.Statements != 1 || rep.Period != period {
		t.Fatalf("first run: %+v, %v", rep, err)
	}
	st, err := s.Statement(ctx, "KEY#k", period)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("November statement: $%s over %d requests (one settled at 5c, one abandoned and settled at its 30c worst case)", st.Cost, st.Requests)
	if st.Cost != 35*money.Cent || st.Requests != 2 {
		t.Fatalf("statement %+v", st)
	}
	rep, err = rollover.Run(ctx, s, rollover.MonthlyClose, at, log)
	if err != nil || rep.Settled != 0 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
	again, _ := s.Statement(ctx, "KEY#k", period)
	if again != st {
		t.Fatalf("second run changed the statement: %+v vs %+v", again, st)
	}
	if list, err := s.Statements(ctx, "KEY#k"); err != nil || len(list) != 1 || list[0] != st {
		t.Fatalf("Statements = %+v, %v", list, err)
	}
	var incomplete int
	s.Events(ctx, "k", nov.Add(-time.Hour), at, func(e *ledger.Event) error {
		if e.Incomplete {
			incomplete++
		}
		return nil
	})
	if incomplete != 1 {
		t.Fatalf("%d incomplete events, want 1", incomplete)
	}
}
