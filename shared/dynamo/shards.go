package dynamo

// Sharded counting: the spend of a user or of the organisation that has no
// limit on it (a deferred charge) reaches shardCount shard items, picked at
// random, so that the requests of a whole class do not all write one
// organisation item (transactions on one item conflict and retry): from the
// settle's transaction when the request reserved on other owners' counters
// anyway, and otherwise from the key ledgers it waited on (deferral.go),
// when a limit closes the deferral or its month ends:
//
//	pk USER#<userId> | ORG,  sk <counter>#s<n>   (USAGE#s3, SPEND#mo#202612#s5)
//	v and the settled figures, as on the counter item beside them
//
// A counter's value is its item plus its shards (plus what is pending on
// key ledgers): Counters, OwnerTotals and the reserve of a counter with a
// limit (which subtracts the shards from its headroom: spend counted before
// the limit was set counts against it) read them all.

import (
	"context"
	"math/rand/v2"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

const shardCount = 8

func shardSK(c budget.Counter, n int) string { return counterSK(c) + "#s" + strconv.Itoa(n) }

// sharded reports whether c's counter may have shards: the lifetime or
// monthly spend of a user or of the organisation (the only deferred ones).
func sharded(c budget.Charge) bool {
	return c.Owner.Kind != budget.OwnerKey && c.Kind == budget.Spend && (c.Unit == budget.Lifetime || c.Unit == budget.Month)
}

// anyShard is a random shard of c's counter.
func anyShard(c budget.Charge) (pk, sk string) {
	return ownerPK(c.Owner), shardSK(c.Counter, rand.IntN(shardCount))
}

// place is where (part of) a counter's value is stored.
type place struct{ pk, sk, attr string }

// places are the items whose attribute sum to c's committed value.
func places(c budget.Charge) []place {
	if c.Owner.Kind == budget.OwnerKey {
		return []place{{keyPK(c.Owner.ID), skUsage, counterAttr(c.Counter)}}
	}
	pk, sk := counterKey(c.Owner, c.Counter)
	out := []place{{pk, sk, attrCommitted}}
	if sharded(c) {
		for n := range shardCount {
			out = append(out, place{pk, shardSK(c.Counter, n), attrCommitted})
		}
	}
	return out
}

// shardTotals adds the settled figures of owner's counter's shards to tot.
func (s *Store) shardTotals(ctx context.Context, owner, counter string, tot *ledger.Totals) error {
	return s.queryAll(ctx, &ddb.QueryInput{
		TableName:              aws.String(s.table),
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{
			":pk": str(owner), ":p": str(counter + "#s"),
		},
	}, "shards of "+owner+" "+counter, func(item map[string]ddb.AttributeValue) error {
		tot.Add(totalsOf(item))
		return nil
	})
}
