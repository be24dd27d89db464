package dynamo

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// TestSteadyReads: with WithSteadyReads, a limited counter's shards and
// pending spend are kept between readings for the time given, its item is
// read each time, and an unlimited counter is read whole.
func TestSteadyReads(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t)
	month := budget.MonthSpend(now)
	base := newStore(t, endpoint, "steady")
	add := func(sk string, amount money.Nanos) {
		t.Helper()
		_, err := base.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName: aws.String(base.table), Key: key(pkOrg, sk), UpdateExpression: aws.String("ADD v :a"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(int64(amount))},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	limited := budget.Charge{Owner: budget.OrgOwner(), Counter: month, Limit: int64(money.Dollar)}
	unlimited := budget.Charge{Owner: budget.OrgOwner(), Counter: budget.LifetimeSpend()}
	add(counterSK(month), 2*money.Cent)
	add(shardSK(month, 3), 5*money.Cent)
	add(skUsage, money.Cent)
	add(shardSK(budget.LifetimeSpend(), 1), money.Cent)

	kept := New(base.db, base.table, 0, WithSteadyReads(time.Hour))
	expired := New(base.db, base.table, 0, WithSteadyReads(time.Nanosecond))
	read := func(s *Store) []int64 {
		t.Helper()
		vals, err := s.Counters(ctx, []budget.Charge{limited, unlimited})
		if err != nil {
			t.Fatal(err)
		}
		return vals
	}
	for name, s := range map[string]*Store{"none": base, "kept": kept, "expired": expired} {
		if got := read(s); got[0] != int64(7*money.Cent) || got[1] != int64(2*money.Cent) {
			t.Errorf("%s, first reading: %v, want 7c and 2c", name, got)
		}
	}
	// A request planned before the limit lands on a shard; the item moves.
	add(shardSK(month, 5), money.Cent)
	add(counterSK(month), money.Cent)
	add(shardSK(budget.LifetimeSpend(), 2), money.Cent)
	for name, want := range map[string]int64{"none": 9, "kept": 8, "expired": 9} {
		s := map[string]*Store{"none": base, "kept": kept, "expired": expired}[name]
		if got := read(s); got[0] != want*int64(money.Cent) || got[1] != int64(3*money.Cent) {
			t.Errorf("%s, second reading: %v, want %dc and 3c", name, got, want)
		}
	}
}
