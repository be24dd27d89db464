package dynamo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
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
}
