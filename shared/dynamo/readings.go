package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Counters returns the committed value of each charge's counter (0 for
// counters not yet written), read strongly consistently: a key's from its
// ledger, others' from their counter items and shards, in one round trip,
// plus, for a user's or the organisation's lifetime or month spend, what
// the ledgers on its DEFERRAL list hold pending (deferral.go), in a
// second one when the list is not empty. A drain that runs between the two
// may be missed in that one reading: it serves headers and estimates; the
// reserve's checks do not depend on it.
//
// With WithSteadyReads, the shards and pending spend of a counter with a
// limit are read once per that time and kept: while a limit is set only
// requests planned without it change their sum (a reserve's closing of the
// deferral moves pending spend to the shards), so a reading of such a
// counter is its item alone. (A limit removed and set again within that
// time: the spend made meanwhile is missed until it passes.)
func (s *Store) Counters(ctx context.Context, charges []budget.Charge) ([]int64, error) {
	n := len(charges)
	where := make([][]place, n, 2*n)
	kept := make([]int64, n)   // the steady part of charges[i] when kept
	shardsAt := make([]int, n) // where charges[i]'s shards are read apart, to be kept; -1
	var owners []string
	for i, c := range charges {
		shardsAt[i] = -1
		ps := places(c)
		where[i] = ps
		if !sharded(c) {
			continue
		}
		if s.steady != nil && c.Limit > 0 {
			where[i] = ps[:1]
			if v, ok := s.steady.get(steadyKey(c)); ok {
				kept[i] = v
				continue
			}
			shardsAt[i] = len(where)
			where = append(where, ps[1:])
		}
		for _, o := range listOwners(c) {
			if !slices.Contains(owners, o) {
				owners = append(owners, o)
			}
		}
	}
	vals, lists, err := s.readCounters(ctx, where, owners)
	if err != nil {
		return nil, err
	}
	pending := make([]int64, n)
	if err := s.pendingInto(ctx, charges, lists, pending); err != nil {
		return nil, err
	}
	out := vals[:n]
	for i, c := range charges {
		switch {
		case !sharded(c):
		case shardsAt[i] >= 0:
			part := vals[shardsAt[i]] + pending[i]
			s.steady.put(steadyKey(c), part)
			out[i] += part
		case s.steady != nil && c.Limit > 0:
			out[i] += kept[i]
		default:
			out[i] += pending[i]
		}
	}
	return out, nil
}

// steadyParts keeps, per limited counter of a user or the organisation,
// its shards and pending spend as last read (Counters), for a while.
type steadyParts struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]steadyPart
}

type steadyPart struct {
	v    int64
	read time.Time
}

// WithSteadyReads keeps the shards and pending spend of counters with a
// limit for ttl between readings (Counters).
func WithSteadyReads(ttl time.Duration) Option {
	return func(s *Store) {
		if ttl > 0 {
			s.steady = &steadyParts{ttl: ttl, m: map[string]steadyPart{}}
		}
	}
}

func steadyKey(c budget.Charge) string {
	pk, sk := chargeKey(c)
	return pk + "\x00" + sk
}

func (p *steadyParts) get(k string) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[k]
	if !ok || time.Since(e.read) >= p.ttl {
		return 0, false
	}
	return e.v, true
}

func (p *steadyParts) put(k string, v int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for old, e := range p.m { // a month's counters go when it ends: bounded
		if time.Since(e.read) >= p.ttl {
			delete(p.m, old)
		}
	}
	p.m[k] = steadyPart{v: v, read: time.Now()}
}

// pendingInto adds to vals[i], for each user's or organisation's lifetime
// or month spend charges[i], the spend pending on the ledgers that lists
// (DEFERRAL lists by owner, as readCounters read them) names.
func (s *Store) pendingInto(ctx context.Context, charges []budget.Charge, lists map[string][]string, vals []int64) error {
	var keys []string
	for _, ks := range lists {
		for _, k := range ks {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	leds, err := s.ledgers(ctx, keys)
	if err != nil {
		return err
	}
	for i, c := range charges {
		if !sharded(c) {
			continue
		}
		month := ""
		if c.Unit == budget.Month {
			month = c.Window
		}
		for _, o := range listOwners(c) {
			for _, k := range lists[o] {
				var t ledger.Totals
				pendingOn(leds[k], o, "").totals(month, commits(o, c.Unit), &t)
				vals[i] += int64(t.Committed)
			}
		}
	}
	return nil
}

// readCounters sums, for each list of places, the attributes stored there,
// and reads the DEFERRAL lists of owners (deferral.go) in the same round
// trip.
func (s *Store) readCounters(ctx context.Context, where [][]place, owners []string) ([]int64, map[string][]string, error) {
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
			if _, named := proj.placeholder(p.attr); !named {
				attrs = append(attrs, proj.name(p.attr))
			}
		}
	}
	for _, o := range owners {
		keys = append(keys, key(o, skDeferral))
	}
	if len(owners) > 0 {
		attrs = append(attrs, proj.name(attrDeferKeys))
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
				return nil, nil, fmt.Errorf("read counters: %w", err)
			}
			s.accountBatch(res)
			for _, item := range res.Responses[s.table] {
				items[getS(item, attrPK)+"\x00"+getS(item, attrSK)] = item
			}
			req = res.UnprocessedKeys
			if attempt > 5 {
				return nil, nil, errors.New("read counters: unprocessed keys remain")
			}
		}
	}
	for i, ps := range where {
		for _, p := range ps {
			out[i] += getN(items[p.pk+"\x00"+p.sk], p.attr)
		}
	}
	lists := map[string][]string{}
	for _, o := range owners {
		if ks := getSS(items[o+"\x00"+skDeferral], attrDeferKeys); len(ks) > 0 {
			lists[o] = ks
		}
	}
	return out, lists, nil
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
	read := func() (ledger.Totals, error) {
		out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
			TableName: aws.String(s.table), Key: key(owner, counter), ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return ledger.Totals{}, fmt.Errorf("get %s %s: %w", owner, counter, err)
		}
		tot := totalsOf(out.Item)
		if strings.HasPrefix(owner, keyPK("")) {
			return tot, nil
		}
		if hold := getSS(out.Item, attrHolders); owner == pkOrg && len(hold) > 0 {
			// v counts the allowances keys hold, spent or not
			// (allowance.go): what they hold is not committed.
			held, err := s.heldAllowances(ctx, counter, hold)
			if err != nil {
				return ledger.Totals{}, err
			}
			tot.Committed -= money.Nanos(held)
		}
		return tot, s.shardTotals(ctx, owner, counter, &tot)
	}
	if month, ok := deferrable(owner, counter); ok {
		// Its keys' ledgers may hold part of it (deferral.go).
		return s.withPending(ctx, owner, month, read)
	}
	return read()
}

// deferrable reports whether owner's counter may have spend pending on
// key ledgers (a user's or the organisation's lifetime or month spend),
// and which month ("" for the lifetime).
func deferrable(owner, counter string) (month string, ok bool) {
	if strings.HasPrefix(owner, keyPK("")) {
		return "", false
	}
	c, err := parseCounter(counter)
	switch {
	case err != nil || c.Kind != budget.Spend:
		return "", false
	case c.Unit == budget.Lifetime:
		return "", true
	case c.Unit == budget.Month:
		return c.Window, true
	}
	return "", false
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
