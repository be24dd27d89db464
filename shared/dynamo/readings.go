package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Counters returns the committed value of each charge's counter (0 for
// counters not yet written), read strongly consistently in one round trip:
// a key's from its ledger, others' from their counter items and shards.
func (s *Store) Counters(ctx context.Context, charges []budget.Charge) ([]int64, error) {
	where := make([][]place, len(charges))
	for i, c := range charges {
		where[i] = places(c)
	}
	return s.readCounters(ctx, where)
}

// readCounters sums, for each list of places, the attributes stored there.
func (s *Store) readCounters(ctx context.Context, where [][]place) ([]int64, error) {
	out := make([]int64, len(where))
	keys := []map[string]ddb.AttributeValue{}
	seen := map[string]bool{}
	proj := newExpression()
	attrs := []string{proj.name(attrPK), proj.name(attrSK)}
	for _, ps := range where {
		for _, p := range ps {
			if id := p.pk + "\x00" + p.sk; !seen[id] {
				seen[id] = true
				keys = append(keys, key(p.pk, p.sk))
			}
			if _, named := proj.byName[p.attr]; !named {
				attrs = append(attrs, proj.name(p.attr))
			}
		}
	}
	items := map[string]map[string]ddb.AttributeValue{}
	for len(keys) > 0 {
		n := min(len(keys), batchGetMax)
		req := map[string]ddb.KeysAndAttributes{s.table: {Keys: keys[:n], ConsistentRead: aws.Bool(true),
			ProjectionExpression: aws.String(strings.Join(attrs, ", ")), ExpressionAttributeNames: proj.names}}
		keys = keys[n:]
		for attempt := 0; len(req) > 0; attempt++ {
			res, err := s.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("read counters: %w", err)
			}
			s.accountBatch(res)
			for _, item := range res.Responses[s.table] {
				items[getS(item, attrPK)+"\x00"+getS(item, attrSK)] = item
			}
			req = res.UnprocessedKeys
			if attempt > 5 {
				return nil, errors.New("read counters: unprocessed keys remain")
			}
		}
	}
	for i, ps := range where {
		for _, p := range ps {
			out[i] += getN(items[p.pk+"\x00"+p.sk], p.attr)
		}
	}
	return out, nil
}

// CounterTotals returns the settled figures of one of owner's counters.
func (s *Store) CounterTotals(ctx context.Context, owner budget.Owner, c budget.Counter) (ledger.Totals, error) {
	return s.OwnerTotals(ctx, ownerPK(owner), counterSK(c))
}

// OwnerTotals returns the settled figures of one counter by its stored
// names, e.g. a key's month: KEY#<id> / SPEND#mo#<yyyymm> (counters.go;
// a key's windows are attributes of its ledger: keyWindowTotals).
func (s *Store) OwnerTotals(ctx context.Context, owner, counter string) (ledger.Totals, error) {
	if keyID, ok := strings.CutPrefix(owner, keyPK("")); ok && counter != skUsage {
		if c, err := parseCounter(counter); err == nil {
			return s.keyWindowTotals(ctx, keyID, c)
		}
	}
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key(owner, counter), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("get %s %s: %w", owner, counter, err)
	}
	tot := totalsOf(out.Item)
	if !strings.HasPrefix(owner, keyPK("")) {
		err = s.shardTotals(ctx, owner, counter, &tot)
	}
	return tot, err
}

func totalsOf(it map[string]ddb.AttributeValue) ledger.Totals {
	return ledger.Totals{
		Cost:             money.Nanos(getN(it, "costNanos")),
		Committed:        money.Nanos(getN(it, attrCommitted)),
		Requests:         getN(it, "requests"),
		Successes:        getN(it, "successes"),
		PromptTokens:     getN(it, "promptTokens"),
		CachedTokens:     getN(it, "cachedTokens"),
		CompletionTokens: getN(it, "completionTokens"),
		LatencyMs:        getN(it, "latencyMs"),
	}
}

// ---- consumed capacity, for benchmarks ----

// Stats are the DynamoDB calls a Store made and the capacity units they consumed.
type Stats struct {
	Calls        int64
	Transactions int64 // of Calls, TransactWriteItems
	// Capacity is what DynamoDB reported, which it does only to calls that
	// ask (ReturnConsumedCapacity). The Store does not ask: the bytes and
	// their decoding would cost every request. A middleware that asks
	// (WithMiddleware; the bench's does) fills it.
	Capacity float64
}

func (s *Store) account(calls int64, out *ddb.TransactWriteItemsOutput) {
	var units float64
	if out != nil {
		for _, c := range out.ConsumedCapacity {
			units += aws.ToFloat64(c.CapacityUnits)
		}
	}
	s.statsMu.Lock()
	s.stats.Transactions += calls
	s.statsMu.Unlock()
	s.addStats(calls, units)
}

func (s *Store) accountBatch(out *ddb.BatchGetItemOutput) {
	var units float64
	for _, c := range out.ConsumedCapacity {
		units += aws.ToFloat64(c.CapacityUnits)
	}
	s.addStats(1, units)
}

func (s *Store) accountOne(c *ddb.ConsumedCapacity) {
	var units float64
	if c != nil {
		units = aws.ToFloat64(c.CapacityUnits)
	}
	s.addStats(1, units)
}

func (s *Store) addStats(calls int64, units float64) {
	s.statsMu.Lock()
	s.stats.Calls += calls
	s.stats.Capacity += units
	s.statsMu.Unlock()
}

// Stats returns the calls and capacity counted so far.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// keyWindowTotals are the figures of one of a key's windowed counters:
// Committed from the ledger and, for a calendar month, the settled figures
// from the key's daily rows of that month (the sums of its events: folded
// aggregates and the events not folded yet).
func (s *Store) keyWindowTotals(ctx context.Context, keyID string, c budget.Counter) (ledger.Totals, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: ledgerKey(keyID), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#c"), ExpressionAttributeNames: map[string]string{"#c": counterAttr(c)},
	})
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("read the ledger of key %s: %w", keyID, err)
	}
	var tot ledger.Totals
	if c.Kind != budget.Spend || c.Unit != budget.Month {
		tot.Committed = money.Nanos(getN(out.Item, counterAttr(c)))
		return tot, nil
	}
	first, err := time.Parse("200601", c.Window)
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("month counter %q: %w", c.Window, err)
	}
	days, err := s.dayRows(ctx, keyID, first, first.AddDate(0, 1, -1))
	for _, d := range days {
		tot.Add(d.Totals) // a day's Committed is 0
	}
	tot.Committed = money.Nanos(getN(out.Item, counterAttr(c)))
	return tot, err
}
