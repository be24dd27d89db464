package dynamo

// Reporting aggregates. Events are the source of truth; the scheduled
// function folds them (fold.go) into two items per key, so reports over
// any number of events read a few items plus the events not folded yet:
//
//	AGG#<keyId> / DAY#<yyyy-mm-dd>#<model>   costNanos, requests, successes,
//	                                         promptTokens, cachedTokens,
//	                                         completionTokens, latencyMs (sum)
//	AGG#<keyId> / CID#<customId>             requests, costNanos,
//	                                         lastSeen (unix ms of the latest
//	                                         folded event's start)
//	AGG#<keyId> / FOLD                       the fold's watermark (fold.go)
//
// Every reader returns the aggregates plus the key's events marked for the
// fold and created at or after the watermark, summed the same way
// (withUnfolded), so a report is
// the sum of the stored events, folded or not. The day is the UTC day of
// the event's CreatedAt, the time the events query ranges over, so a
// whole-day range of aggregates and of events cover the same requests.
// Aggregates never expire: they outlive the events they summarise (events
// expire after the Store's retention, which must exceed the fold's lag).
// They only hold sums; medians and percentiles need the events.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
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

// DailyAggregates returns the aggregates of keyIDs for every UTC day that
// overlaps [start, end): per key in the order given, then per day and
// model, oldest first. Days without events have no rows. Each key's rows
// are its folded aggregates plus its events not folded yet (fold.go),
// read a few keys at a time.
func (s *Store) DailyAggregates(ctx context.Context, keyIDs []string, start, end time.Time) ([]ledger.DailyAggregate, error) {
	if !end.After(start) || len(keyIDs) == 0 {
		return nil, nil
	}
	first := start.UTC().Truncate(24 * time.Hour)
	last := end.Add(-time.Nanosecond).UTC().Truncate(24 * time.Hour)
	perKey := make([][]ledger.DailyAggregate, len(keyIDs))
	err := forEach(ctx, len(keyIDs), reportConcurrency, func(ctx context.Context, i int) error {
		rows, err := s.dayRows(ctx, keyIDs[i], first, last)
		perKey[i] = rows
		return err
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

// dayRows returns keyID's day-and-model rows of the UTC days first to last
// (both midnight), in sort key order: the folded aggregates and the
// unfolded events summed the same way.
func (s *Store) dayRows(ctx context.Context, keyID string, first, last time.Time) ([]ledger.DailyAggregate, error) {
	// "#" < "$": every model of the last day sorts below "DAY#<last>$".
	lo := skDayPrefix + first.Format(dayLayout)
	hi := skDayPrefix + last.Format(dayLayout) + "$"
	var rows map[string]ledger.DailyAggregate
	evs, err := s.withUnfolded(ctx, keyID, first.UnixMilli(), last.AddDate(0, 0, 1).UnixMilli(), func() error {
		rows = map[string]ledger.DailyAggregate{}
		return s.queryAll(ctx, &ddb.QueryInput{
			TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :lo AND :hi"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{
				":pk": str(aggPK(keyID)), ":lo": str(lo), ":hi": str(hi),
			},
		}, "daily aggregates of key "+keyID, func(item map[string]ddb.AttributeValue) error {
			row, err := decodeDay(keyID, item)
			rows[getS(item, attrSK)] = row
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		created := time.UnixMilli(ev.CreatedAt)
		sk := daySK(created, ev.Model)
		row, ok := rows[sk]
		if !ok {
			row = ledger.DailyAggregate{KeyID: keyID, Day: created.UTC().Truncate(24 * time.Hour).Unix(), Model: ev.Model}
		}
		addEvent(&row.Totals, ev)
		rows[sk] = row
	}
	sks := make([]string, 0, len(rows))
	for sk := range rows {
		sks = append(sks, sk)
	}
	sort.Strings(sks)
	out := make([]ledger.DailyAggregate, 0, len(sks))
	for _, sk := range sks {
		out = append(out, rows[sk])
	}
	return out, nil
}

// decodeDay reads a DAY# item: its sort key names the day and the model.
func decodeDay(keyID string, item map[string]ddb.AttributeValue) (ledger.DailyAggregate, error) {
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
	totals, err := s.CustomIDTotals(ctx, keyID)
	ids := make([]string, 0, len(totals))
	for _, t := range totals {
		ids = append(ids, t.CustomID)
	}
	return ids, err
}

// CustomIDTotals returns the per-custom-id figures of keyID, in byte order
// of the ids: the folded aggregates and the unfolded events.
func (s *Store) CustomIDTotals(ctx context.Context, keyID string) ([]ledger.CustomIDTotals, error) {
	var byID map[string]ledger.CustomIDTotals
	evs, err := s.withUnfolded(ctx, keyID, 0, 0, func() error {
		byID = map[string]ledger.CustomIDTotals{}
		return s.queryAll(ctx, &ddb.QueryInput{
			TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
			KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{
				":pk": str(aggPK(keyID)), ":p": str(skCustomIDPrefix),
			},
		}, "custom ids of key "+keyID, func(item map[string]ddb.AttributeValue) error {
			id := strings.TrimPrefix(getS(item, attrSK), skCustomIDPrefix)
			byID[id] = ledger.CustomIDTotals{CustomID: id, Requests: getN(item, "requests"),
				Cost: money.Nanos(getN(item, "costNanos")), LastSeen: getN(item, "lastSeen")}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if ev.CustomID == "" {
			continue
		}
		c := byID[ev.CustomID]
		c.CustomID = ev.CustomID
		c.Requests++
		c.Cost += ev.Cost
		c.LastSeen = max(c.LastSeen, ev.CreatedAt)
		byID[ev.CustomID] = c
	}
	list := make([]ledger.CustomIDTotals, 0, len(byID))
	for _, c := range byID {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].CustomID < list[j].CustomID })
	return list, nil
}

// queryAll runs in page by page and calls each for every item.
func (s *Store) queryAll(ctx context.Context, in *ddb.QueryInput, what string, each func(map[string]ddb.AttributeValue) error) error {
	p := ddb.NewQueryPaginator(s.db, in)
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

// ImportEvents stores evs as they are, without counters or aggregates and
// not marked for the fold (fold.go),
// with BatchWriteItem (25 at a time, unprocessed items retried). It is for
// loading history and synthetic data, not for live traffic, which settles.
func (s *Store) ImportEvents(ctx context.Context, evs []*ledger.Event) error {
	reqs := make([]ddb.WriteRequest, 0, len(evs))
	for _, ev := range evs {
		item, err := eventItem(ev, s.retention)
		if err != nil {
			return err
		}
		reqs = append(reqs, ddb.WriteRequest{PutRequest: &ddb.PutRequest{Item: item}})
	}
	return s.batchWrite(ctx, reqs, "import events")
}

// ImportDailyAggregates writes rows as day-and-model aggregates, replacing
// any stored for the same key, day and model, and moves each key's fold
// watermark (fold.go) to the end of its latest imported day, so reports do
// not read the events of those days again (imported events are not marked
// for the fold: the rows already hold them). Like ImportEvents it is for
// loading history and synthetic data, of days without live traffic.
func (s *Store) ImportDailyAggregates(ctx context.Context, rows []ledger.DailyAggregate) error {
	reqs := make([]ddb.WriteRequest, 0, len(rows))
	ends := map[string]int64{}
	for _, r := range rows {
		ends[r.KeyID] = max(ends[r.KeyID], time.Unix(r.Day, 0).UTC().Truncate(24*time.Hour).AddDate(0, 0, 1).UnixMilli())
		t := r.Totals
		item := key(aggPK(r.KeyID), daySK(time.Unix(r.Day, 0), r.Model))
		item["costNanos"], item["requests"], item["successes"] = num(int64(t.Cost)), num(t.Requests), num(t.Successes)
		item["promptTokens"], item["cachedTokens"] = num(t.PromptTokens), num(t.CachedTokens)
		item["completionTokens"], item["latencyMs"] = num(t.CompletionTokens), num(t.LatencyMs)
		reqs = append(reqs, ddb.WriteRequest{PutRequest: &ddb.PutRequest{Item: item}})
	}
	if err := s.batchWrite(ctx, reqs, "import daily aggregates"); err != nil {
		return err
	}
	for keyID, end := range ends {
		_, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName: aws.String(s.table), Key: foldKey(keyID),
			UpdateExpression:          aws.String("SET #w = :e"),
			ConditionExpression:       aws.String("attribute_not_exists(#w) OR #w < :e"),
			ExpressionAttributeNames:  map[string]string{"#w": attrWatermark},
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":e": num(end)},
		})
		if err != nil && !isConditionFailed(err) {
			return fmt.Errorf("import daily aggregates: the watermark of key %s: %w", keyID, err)
		}
	}
	return nil
}

// batchWrite sends reqs in batches of 25, retrying unprocessed items with
// backoff.
func (s *Store) batchWrite(ctx context.Context, reqs []ddb.WriteRequest, what string) error {
	for len(reqs) > 0 {
		n := min(len(reqs), batchWriteSize)
		pending := reqs[:n]
		reqs = reqs[n:]
		backoff := 10 * time.Millisecond
		for attempt := 0; len(pending) > 0; attempt++ {
			out, err := s.db.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{
				RequestItems: map[string][]ddb.WriteRequest{s.table: pending},
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
