package dynamo

// Reporting aggregates. The settle transaction of every request that ends
// as an event (recordEvent) also adds the event to two items beside it, so
// reports over any number of events read a few items:
//
//	AGG#<keyId> / DAY#<yyyy-mm-dd>#<model>   costNanos, requests, successes,
//	                                         promptTokens, cachedTokens,
//	                                         completionTokens, latencyMs (sum)
//	AGG#<keyId> / CID#<customId>             requests, costNanos,
//	                                         lastSeen (unix ms of the latest
//	                                         settled event's start)
//
// The day is the UTC day of the event's CreatedAt, the time the events
// query ranges over, so a whole-day range of aggregates and of events
// cover the same requests. Aggregates never expire: they outlive the events
// they summarise (events expire after the Store's retention). They only
// hold sums; medians and percentiles need the events.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

const (
	skDayPrefix      = "DAY#"
	skCustomIDPrefix = "CID#"
	dayLayout        = "2006-01-02"
	secondsPerDay    = 24 * 60 * 60
	// reportConcurrency bounds the queries one report runs at once.
	reportConcurrency = 16
	// batchWriteSize is BatchWriteItem's limit.
	batchWriteSize = 25
)

func aggPK(keyID string) string { return "AGG#" + keyID }

// daySK is the sort key of a day-and-model aggregate; t's UTC day counts.
func daySK(t time.Time, model string) string {
	return skDayPrefix + t.UTC().Format(dayLayout) + "#" + model
}

func customIDSK(id string) string { return skCustomIDPrefix + id }

// aggregateItems returns the updates that add ev to its key's aggregates:
// its day-and-model item and, when it carries a custom id, that id's item.
func (s *Store) aggregateItems(ev *ledger.Event) []types.TransactWriteItem {
	success := int64(0)
	if ev.Success() {
		success = 1
	}
	created := time.UnixMilli(ev.CreatedAt)
	items := []types.TransactWriteItem{{Update: &types.Update{
		TableName: aws.String(s.table), Key: key(aggPK(ev.KeyID), daySK(created, ev.Model)),
		UpdateExpression: aws.String("ADD costNanos :c, requests :one, successes :s, promptTokens :p, " +
			"cachedTokens :ct, completionTokens :o, latencyMs :l"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":c": num(int64(ev.Cost)), ":one": num(1), ":s": num(success),
			":p": num(ev.Usage.PromptTokens), ":ct": num(ev.Usage.CachedTokens),
			":o": num(ev.Usage.CompletionTokens), ":l": num(ev.LatencyMs),
		},
	}}}
	if ev.CustomID != "" {
		items = append(items, types.TransactWriteItem{Update: &types.Update{
			TableName: aws.String(s.table), Key: key(aggPK(ev.KeyID), customIDSK(ev.CustomID)),
			UpdateExpression: aws.String("ADD requests :one, costNanos :c SET lastSeen = :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":one": num(1), ":c": num(int64(ev.Cost)), ":t": num(ev.CreatedAt),
			},
		}})
	}
	return items
}

// DailyAggregates returns the aggregates of keyIDs for every UTC day that
// overlaps [start, end): per key in the order given, then per day and
// model, oldest first. Days without events have no rows. It runs one
// paginated query per key, a few at a time.
func (s *Store) DailyAggregates(ctx context.Context, keyIDs []string, start, end time.Time) ([]ledger.DailyAggregate, error) {
	if !end.After(start) || len(keyIDs) == 0 {
		return nil, nil
	}
	// "#" < "$": every model of the last day sorts below "DAY#<last>$".
	lo := skDayPrefix + start.UTC().Format(dayLayout)
	hi := skDayPrefix + end.Add(-time.Nanosecond).UTC().Format(dayLayout) + "$"
	perKey := make([][]ledger.DailyAggregate, len(keyIDs))
	err := forEach(ctx, len(keyIDs), reportConcurrency, func(ctx context.Context, i int) error {
		keyID := keyIDs[i]
		return s.queryAll(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(s.table),
			KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :lo AND :hi"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(aggPK(keyID)), ":lo": str(lo), ":hi": str(hi),
			},
		}, "daily aggregates of key "+keyID, func(item map[string]types.AttributeValue) error {
			row, err := decodeDay(keyID, item)
			if err != nil {
				return err
			}
			perKey[i] = append(perKey[i], row)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var out []ledger.DailyAggregate
	for _, rows := range perKey {
		out = append(out, rows...)
	}
	return out, nil
}

// decodeDay reads a DAY# item: its sort key names the day and the model.
func decodeDay(keyID string, item map[string]types.AttributeValue) (ledger.DailyAggregate, error) {
	sk := getS(item, attrSK)
	rest, ok := strings.CutPrefix(sk, skDayPrefix)
	if !ok || len(rest) < len(dayLayout)+1 || rest[len(dayLayout)] != '#' {
		return ledger.DailyAggregate{}, fmt.Errorf("aggregate of key %s: malformed sort key %q", keyID, sk)
	}
	day, err := time.Parse(dayLayout, rest[:len(dayLayout)])
	if err != nil {
		return ledger.DailyAggregate{}, fmt.Errorf("aggregate of key %s: sort key %q: %w", keyID, sk, err)
	}
	return ledger.DailyAggregate{KeyID: keyID, Day: day.Unix(), Model: rest[len(dayLayout)+1:], Totals: totalsOf(item)}, nil
}

// CustomIDs returns the custom ids that keyID's settled events carried,
// in byte order (empty when none did).
func (s *Store) CustomIDs(ctx context.Context, keyID string) ([]string, error) {
	var ids []string
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                aws.String(s.table),
		KeyConditionExpression:   aws.String("pk = :pk AND begins_with(sk, :p)"),
		ProjectionExpression:     aws.String("#sk"),
		ExpressionAttributeNames: map[string]string{"#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(aggPK(keyID)), ":p": str(skCustomIDPrefix),
		},
	}, "custom ids of key "+keyID, func(item map[string]types.AttributeValue) error {
		ids = append(ids, strings.TrimPrefix(getS(item, attrSK), skCustomIDPrefix))
		return nil
	})
	return ids, err
}

// ledger.CustomIDTotals returns the per-custom-id figures of keyID, in byte order
// of the ids.
func (s *Store) CustomIDTotals(ctx context.Context, keyID string) ([]ledger.CustomIDTotals, error) {
	var list []ledger.CustomIDTotals
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(aggPK(keyID)), ":p": str(skCustomIDPrefix),
		},
	}, "custom ids of key "+keyID, func(item map[string]types.AttributeValue) error {
		list = append(list, ledger.CustomIDTotals{
			CustomID: strings.TrimPrefix(getS(item, attrSK), skCustomIDPrefix),
			Requests: getN(item, "requests"), Cost: money.Nanos(getN(item, "costNanos")), LastSeen: getN(item, "lastSeen"),
		})
		return nil
	})
	return list, err
}

// queryAll runs in page by page and calls each for every item.
func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput, what string, each func(map[string]types.AttributeValue) error) error {
	p := dynamodb.NewQueryPaginator(s.db, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("query %s: %w", what, err)
		}
		for _, item := range page.Items {
			if err := each(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// forEach calls fn for 0..n-1, at most limit at a time. The first error
// cancels the context the others run with, and is returned.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, limit)
	)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return fmt.Errorf("report: %w", context.Cause(ctx))
	}
	return first
}

// ---- bulk import: backfills and benchmarks ----

// ImportEvents stores evs as they are, without counters or aggregates,
// with BatchWriteItem (25 at a time, unprocessed items retried). It is for
// loading history and synthetic data, not for live traffic, which settles.
func (s *Store) ImportEvents(ctx context.Context, evs []*ledger.Event) error {
	reqs := make([]types.WriteRequest, 0, len(evs))
	for _, ev := range evs {
		item, err := eventItem(ev, s.retention)
		if err != nil {
			return err
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	return s.batchWrite(ctx, reqs, "import events")
}

// ImportDailyAggregates writes rows as day-and-model aggregates, replacing
// any stored for the same key, day and model. Like ImportEvents it is for
// loading history and synthetic data.
func (s *Store) ImportDailyAggregates(ctx context.Context, rows []ledger.DailyAggregate) error {
	reqs := make([]types.WriteRequest, 0, len(rows))
	for _, r := range rows {
		t := r.Totals
		item := key(aggPK(r.KeyID), daySK(time.Unix(r.Day, 0), r.Model))
		item["costNanos"], item["requests"], item["successes"] = num(int64(t.Cost)), num(t.Requests), num(t.Successes)
		item["promptTokens"], item["cachedTokens"] = num(t.PromptTokens), num(t.CachedTokens)
		item["completionTokens"], item["latencyMs"] = num(t.CompletionTokens), num(t.LatencyMs)
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	return s.batchWrite(ctx, reqs, "import daily aggregates")
}

// batchWrite sends reqs in batches of 25, retrying unprocessed items with
// backoff.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest, what string) error {
	for len(reqs) > 0 {
		n := min(len(reqs), batchWriteSize)
		pending := reqs[:n]
		reqs = reqs[n:]
		backoff := 10 * time.Millisecond
		for attempt := 0; len(pending) > 0; attempt++ {
			out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
				RequestItems: map[string][]types.WriteRequest{s.table: pending},
			})
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			pending = out.UnprocessedItems[s.table]
			if len(pending) == 0 {
				break
			}
			if attempt >= 10 {
				return fmt.Errorf("%s: %w", what, errUnprocessed)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", what, ctx.Err())
			case <-time.After(backoff/2 + rand.N(backoff)):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
	return nil
}

var errUnprocessed = errors.New("items left unprocessed after retries")
