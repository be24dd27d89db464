package dynamo

// The fold: events are the source of truth of the reporting aggregates
// (reports.go); the settle stores the event alone, marked "fold" (the
// events of earlier versions, imported events and those of the legacy
// sweep are not: their aggregates were written with them), and the
// scheduled function folds a key's marked events into its aggregates in
// batches. A key's fold item holds how far that went:
//
//	AGG#<keyId> / FOLD   w  the watermark (unix ms): every marked event of the key
//	                        created before w is in the aggregates (or was skipped:
//	                        below); none created at or after it is
//
// and the key's ledger holds the fence fw (unix ms): no reservation created
// (Event.CreatedAt) before fw can be opened any more (reserveExpression
// checks it), so after the fold set it, every event created before it
// either exists or belongs to a reservation visible on the ledger.
//
// A fold of one key (FoldKey): set the fence to now - foldMargin, or just
// past the key's newest event if earlier (an
// UpdateItem that returns the ledger as written: a strongly consistent
// image); the horizon H is the fence, or the creation time of the oldest
// reservation still open if earlier (its event is stored before its entry
// goes). Every event created before H is then stored, or will never be:
// the event of an open reservation is stored before the entry ends, and a
// reservation released or abandoned (a tombstone) has no event; its late
// settle's event, taken back at once (Settle), is skipped by the fold (the
// tombstone outlives any settle of it). The fold reads the key's events in
// [w, H) (strongly consistent) and, in one transaction, adds their sums to
// the aggregates and sets w to H, on the condition that w is still what it
// read: two folds never both count an event. More than a transaction's worth of aggregates are
// folded in several steps, each advancing w as far as it folded.
//
// Readers (reports.go) return the aggregates plus the marked events created
// at or after w, summed the same way, reading w before and after and retrying
// when a fold committed in between: every report sees each stored event
// exactly once. The fold lags the traffic by at most the sweep's interval
// (5 minutes), foldMargin, and the deadline of a reservation left open by
// an invocation that died (the sweep settles it, then the fold passes it):
// well under an hour, far below the events' retention (30 days by
// default), which must stay longer than that lag plus any outage of the
// scheduled function; an event expired before it was folded would be lost
// to the reports.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

const (
	skFold        = "FOLD"
	attrWatermark = "w"
	attrFence     = "fw"
	// attrByFold marks the events whose figures reach the aggregates by
	// the fold (storeEvent).
	attrByFold = "fold"
	// foldMargin is how far behind now the fold's fence stays: a reserve
	// lands within milliseconds of its request's start (CreatedAt), on a
	// clock that may differ from the scheduled function's by a little;
	// one later than this is refused (errFenced) rather than miscounted.
	foldMargin = 2 * time.Minute
	// foldItems bounds the aggregates of one fold step: a transaction's 100
	// items, one of them the fold item.
	foldItems = 99
	// foldEvents bounds the events read for one fold step.
	foldEvents = 2000
)

func foldKey(keyID string) map[string]ddb.AttributeValue { return key(aggPK(keyID), skFold) }

// foldState is a key's fold item as read.
type foldState struct {
	w    int64
	hasW bool
}

func (s *Store) readFold(ctx context.Context, keyID string) (foldState, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: foldKey(keyID), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return foldState{}, fmt.Errorf("read the fold of key %s: %w", keyID, err)
	}
	_, hasW := out.Item[attrWatermark]
	return foldState{w: getN(out.Item, attrWatermark), hasW: hasW}, nil
}

// Fold folds the events of every key whose ledger had reservations since
// the sweep last saw it idle (the sweep's index, which only keys with
// traffic enter) and returns how many keys it folded.
func (s *Store) Fold(ctx context.Context, now time.Time) (int, error) {
	var keys []string
	err := s.queryAll(ctx, &ddb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(indexGSI3),
		KeyConditionExpression:    aws.String("gsi3pk = :pk"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":pk": str(gsiLedgers)},
	}, "query ledgers to fold", func(found map[string]ddb.AttributeValue) error {
		if id, ok := strings.CutPrefix(getS(found, attrPK), keyPK("")); ok {
			keys = append(keys, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range keys {
		if _, err := s.FoldKey(ctx, id, now); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// FoldKey folds keyID's events created before its safe horizon into its
// aggregates. It reports complete when nothing is left to fold: no
// reservation is open and no event at or after the watermark exists, so
// the sweep may take the ledger out of its index.
func (s *Store) FoldKey(ctx context.Context, keyID string, now time.Time) (complete bool, err error) {
	// The fence need not pass the newest event: a key that went quiet is
	// folded completely without refusing a request that starts later on a
	// clock behind the fold's.
	newest, err := s.newestEvent(ctx, keyID)
	if err != nil {
		return false, err
	}
	led, err := s.fence(ctx, keyID, min(now.Add(-foldMargin).UnixMilli(), newest+1))
	if err != nil || led == nil {
		return led == nil && err == nil, err
	}
	horizon := getN(led, attrFence)
	open := false
	skip := map[string]bool{}
	for name := range led {
		id, ok := strings.CutPrefix(name, entryPrefix)
		if !ok {
			continue
		}
		val := getS(led, name)
		if strings.HasPrefix(val, tombEntry) {
			skip[id] = true
			continue
		}
		r, err := decodeEntry(keyID, id, val)
		if err != nil {
			return false, err
		}
		open = true
		horizon = min(horizon, r.Event.CreatedAt)
	}
	for {
		st, err := s.readFold(ctx, keyID)
		if err != nil {
			return false, err
		}
		if st.w >= horizon {
			break
		}
		evs, more, err := s.eventsFrom(ctx, keyID, st.w, horizon, foldEvents)
		if err != nil {
			return false, err
		}
		upto, sums := foldBatch(evs, skip, horizon, more)
		if upto <= st.w {
			return false, fmt.Errorf("fold key %s: no progress past %d", keyID, st.w)
		}
		items := s.aggregateUpdates(keyID, sums)
		items = append(items, s.foldAdvance(keyID, st, upto))
		err = s.transact(ctx, items, "fold key "+keyID)
		if failed := conditionsFailed(err); len(failed) > 0 {
			continue // another fold moved it: read again
		}
		if err != nil {
			return false, err
		}
	}
	if open {
		return false, nil
	}
	st, err := s.readFold(ctx, keyID)
	if err != nil {
		return false, err
	}
	left, _, err := s.eventsFrom(ctx, keyID, st.w, 0, 1)
	return len(left) == 0, err
}

// newestEvent is the creation time of keyID's newest event (0 when none).
func (s *Store) newestEvent(ctx context.Context, keyID string) (int64, error) {
	out, err := s.db.Query(ctx, &ddb.QueryInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), ScanIndexForward: aws.Bool(false), Limit: aws.Int32(1),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":pk": str(eventPK(keyID))},
		ProjectionExpression:      aws.String("sk"),
	})
	if err != nil {
		return 0, fmt.Errorf("query the newest event of key %s: %w", keyID, err)
	}
	if len(out.Items) == 0 {
		return 0, nil
	}
	ms, _, ok := strings.Cut(getS(out.Items[0], attrSK), "#")
	if !ok {
		return 0, fmt.Errorf("event of key %s: malformed sort key", keyID)
	}
	return strconv.ParseInt(ms, 10, 64)
}

// fence sets keyID's fence to h (unless it is there already) and returns
// the ledger as written, or as it was when the fence was already at or past
// h; nil when the key has no ledger.
//
// It reads the ledger first (strongly consistent) and writes only when the
// fence is behind h: a key that went quiet is visited by every fold until
// the sweep takes it out of the index, and a conditional write whose
// condition fails still costs a write unit, five times a read's price.
// The image read is as good as the write's: the fence it shows was
// already in place, so no reservation created before it opens after it.
func (s *Store) fence(ctx context.Context, keyID string, h int64) (map[string]ddb.AttributeValue, error) {
	led, err := s.getItem(ctx, keyPK(keyID), skUsage, "ledger of key "+keyID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fence the ledger of key %s: %w", keyID, err)
	}
	if _, ok := led[attrFence]; ok && getN(led, attrFence) >= h {
		return led, nil
	}
	out, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: aws.String(s.table), Key: ledgerKey(keyID),
		UpdateExpression:                    aws.String("SET #f = :h"),
		ConditionExpression:                 aws.String("attribute_exists(pk) AND (attribute_not_exists(#f) OR #f < :h)"),
		ExpressionAttributeNames:            map[string]string{"#f": attrFence},
		ExpressionAttributeValues:           map[string]ddb.AttributeValue{":h": num(h)},
		ReturnValues:                        ddb.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: ddb.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		s.accountOne(out.ConsumedCapacity)
		return out.Attributes, nil
	}
	var ccf *ddb.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if len(ccf.Item) == 0 {
			return nil, nil
		}
		return ccf.Item, nil
	}
	return nil, fmt.Errorf("fence the ledger of key %s: %w", keyID, err)
}

// foldAdvance moves the watermark to upto on the condition that it is
// still st's.
func (s *Store) foldAdvance(keyID string, st foldState, upto int64) ddb.TransactWriteItem {
	e := newExpression()
	w := e.name(attrWatermark)
	e.set(w + " = " + e.value(num(upto)))
	if st.hasW {
		e.cond(w + " = " + e.value(num(st.w)))
	} else {
		e.cond("attribute_not_exists(" + w + ")")
	}
	return ddb.TransactWriteItem{Update: &ddb.Update{
		TableName: aws.String(s.table), Key: foldKey(keyID),
		UpdateExpression: aws.String(e.update()), ConditionExpression: e.condition(),
		ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
	}}
}

// eventsFrom returns keyID's events marked for the fold created in
// [from, to) (to 0: no end), oldest first, at most limit of them (0: all),
// and whether more exist. Strongly consistent; bodies are not read.
func (s *Store) eventsFrom(ctx context.Context, keyID string, from, to int64, limit int) ([]*ledger.Event, bool, error) {
	cond := "pk = :pk AND sk >= :lo"
	vals := map[string]ddb.AttributeValue{":pk": str(eventPK(keyID)), ":lo": str(eventSK(from, ""))}
	if to > 0 {
		cond = "pk = :pk AND sk BETWEEN :lo AND :hi"
		vals[":hi"] = str(eventSK(to, "")) // "<to>#" sorts below every event created at to
	}
	in := &ddb.QueryInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String(cond), ExpressionAttributeValues: vals,
		FilterExpression:     aws.String("attribute_exists(#f)"),
		ProjectionExpression: aws.String("#d"), ExpressionAttributeNames: map[string]string{"#d": attrData, "#f": attrByFold},
	}
	var evs []*ledger.Event
	p := ddb.NewQueryPaginator(s.db, in)
	for p.HasMorePages() {
		if limit > 0 && len(evs) >= limit {
			return evs, true, nil
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("query the events of key %s: %w", keyID, err)
		}
		s.accountOne(page.ConsumedCapacity)
		for _, item := range page.Items {
			ev, err := decodeEvent(item)
			if err != nil {
				return nil, false, err
			}
			evs = append(evs, ev)
		}
	}
	if limit > 0 && len(evs) > limit {
		return evs[:limit], true, nil
	}
	return evs, false, nil
}

// aggSums are the sums one fold step adds, per aggregate item (sort key).
type aggSums struct {
	days map[string]ledger.Totals
	cids map[string]ledger.CustomIDTotals
}

func newAggSums() *aggSums {
	return &aggSums{days: map[string]ledger.Totals{}, cids: map[string]ledger.CustomIDTotals{}}
}

// add counts ev in its day-and-model and custom-id sums.
func (a *aggSums) add(ev *ledger.Event) {
	sk := daySK(time.UnixMilli(ev.CreatedAt), ev.Model)
	t := a.days[sk]
	addEvent(&t, ev)
	a.days[sk] = t
	if ev.CustomID != "" {
		c := a.cids[ev.CustomID]
		c.CustomID = ev.CustomID
		c.Requests++
		c.Cost += ev.Cost
		c.LastSeen = max(c.LastSeen, ev.CreatedAt)
		a.cids[ev.CustomID] = c
	}
}

func (a *aggSums) size() int { return len(a.days) + len(a.cids) }

// addEvent adds ev's figures to t, as settledFigures names them.
func addEvent(t *ledger.Totals, ev *ledger.Event) {
	t.Cost += ev.Cost
	t.Requests++
	if ev.Success() {
		t.Successes++
	}
	t.PromptTokens += ev.Usage.PromptTokens
	t.CachedTokens += ev.Usage.CachedTokens
	t.CompletionTokens += ev.Usage.CompletionTokens
	t.LatencyMs += ev.LatencyMs
}

// foldBatch sums a prefix of evs (oldest first; more when events after
// them exist before horizon) that fits one step, whole milliseconds at a
// time, leaving out those whose reservation is a tombstone (skip), and
// returns the watermark after it with the sums.
func foldBatch(evs []*ledger.Event, skip map[string]bool, horizon int64, more bool) (int64, *aggSums) {
	sums := newAggSums()
	for i := 0; i < len(evs); {
		j := i
		next := newAggSums()
		for k, v := range sums.days {
			next.days[k] = v
		}
		for k, v := range sums.cids {
			next.cids[k] = v
		}
		for ; j < len(evs) && evs[j].CreatedAt == evs[i].CreatedAt; j++ {
			if !skip[evs[j].ID] {
				next.add(evs[j])
			}
		}
		if next.size() > foldItems || j == len(evs) && more {
			return evs[i].CreatedAt, sums // this millisecond goes to the next step
		}
		sums, i = next, j
	}
	return horizon, sums
}

// aggregateUpdates are the writes that add sums to keyID's aggregates.
func (s *Store) aggregateUpdates(keyID string, sums *aggSums) []ddb.TransactWriteItem {
	var items []ddb.TransactWriteItem
	sks := make([]string, 0, len(sums.days))
	for sk := range sums.days {
		sks = append(sks, sk)
	}
	sort.Strings(sks)
	for _, sk := range sks {
		t := sums.days[sk]
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: key(aggPK(keyID), sk),
			UpdateExpression: aws.String("ADD costNanos :c, requests :n, successes :s, promptTokens :p, " +
				"cachedTokens :ct, completionTokens :o, latencyMs :l"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{
				":c": num(int64(t.Cost)), ":n": num(t.Requests), ":s": num(t.Successes),
				":p": num(t.PromptTokens), ":ct": num(t.CachedTokens),
				":o": num(t.CompletionTokens), ":l": num(t.LatencyMs),
			},
		}})
	}
	ids := make([]string, 0, len(sums.cids))
	for id := range sums.cids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := sums.cids[id]
		// Steps fold in order of time, so the latest start is the newest.
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: key(aggPK(keyID), customIDSK(id)),
			UpdateExpression: aws.String("ADD requests :n, costNanos :c SET lastSeen = :t"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{
				":n": num(c.Requests), ":c": num(int64(c.Cost)), ":t": num(c.LastSeen),
			},
		}})
	}
	return items
}

// withUnfolded runs aggs (a consistent read of keyID's aggregates, which
// must start its result afresh on each call) and reads the key's events
// not folded yet, created in [from, to) (to 0: no end), between two reads
// of the watermark, again until no fold committed in between: the
// aggregates and the events returned then count each event exactly once.
func (s *Store) withUnfolded(ctx context.Context, keyID string, from, to int64, aggs func() error) ([]*ledger.Event, error) {
	for attempt := 0; attempt < 20; attempt++ {
		before, err := s.readFold(ctx, keyID)
		if err != nil {
			return nil, err
		}
		if err := aggs(); err != nil {
			return nil, err
		}
		var evs []*ledger.Event
		if lo := max(from, before.w); to == 0 || lo < to {
			if evs, _, err = s.eventsFrom(ctx, keyID, lo, to, 0); err != nil {
				return nil, err
			}
		}
		after, err := s.readFold(ctx, keyID)
		if err != nil {
			return nil, err
		}
		if after.w == before.w {
			return evs, nil
		}
	}
	return nil, fmt.Errorf("read the aggregates of key %s: folds kept moving", keyID)
}
